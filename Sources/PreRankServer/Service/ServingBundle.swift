import TwinTower

/// A model and its item index, checked against each other, ready to serve.
///
/// Immutable and shared by every request; a reload builds a new bundle off the serving path and
/// swaps it in atomically, so requests in flight finish on the bundle they started with.
public final class ServingBundle: Sendable {
    public let model: Model
    public let index: ItemIndex
    public let userEncoder: FeatureEncoder
    public let chain: LogitChain
    /// The user tower in Double (inference precision), made once per load.
    public let userTower: PreciseTower
    /// Names of the user-side fields the model knows (others in a request are ignored).
    public let userFields: Set<String>

    public init(model: Model, index: ItemIndex) throws(FormatError) {
        guard index.fingerprint == model.fingerprint else {
            throw FormatError(index.path, "index model_fingerprint does not match the model's weights; rebuild the index")
        }
        guard index.taskCount == model.spec.tasks.count, index.d == model.d else {
            throw FormatError(index.path, "index vectors are [N, \(index.taskCount), \(index.d)], model has \(model.spec.tasks.count) tasks of d = \(model.d)")
        }
        self.model = model
        self.index = index
        self.userEncoder = model.encoder(.user)
        self.chain = model.chain
        self.userTower = model.userTower.precise
        self.userFields = Set(model.spec.fields(of: .user).map(\.name))
    }

    /// Loads `modelDirectory` and `indexPath`, populating the index mapping (so the first
    /// request does not pay page faults).
    public static func load(modelDirectory: String, indexPath: String, populate: Bool = true) throws(FormatError) -> ServingBundle {
        let model = try ModelStore.load(directory: modelDirectory)
        let index = try ItemIndex(path: indexPath, model: model, populate: populate, residency: populate ? .hugePages : .mapped)
        return try ServingBundle(model: model, index: index)
    }

    public var version: String { model.spec.version }
}
