import Catalog
import Dispatch
import Foundation
import TwinTower

/// A model and its item index, checked against each other, ready to serve.
///
/// Immutable and shared by every request; a reload builds a new bundle off the serving path (or
/// shares this one when its files are unchanged, see `ServingCache`) and swaps it in atomically,
/// so requests in flight finish on the bundle they started with.
public final class ServingBundle: Sendable {
    public let model: Model
    public let index: ItemIndex
    public let userEncoder: FeatureEncoder
    public let chain: LogitChain
    /// The user tower in Double (inference precision), made once per load.
    public let userTower: PreciseTower
    /// Names of the user-side fields the model knows (others in a request are ignored).
    public let userFields: Set<String>
    /// When the index file was mapped; a reload that shares the index keeps it (`/v1/model`).
    public let indexMappedAt: Date
    /// Items upserted and deleted over `index` since it was built (`POST /admin/items`, replayed
    /// from the update log). A change makes a new bundle sharing everything else (`with(delta:)`).
    public let delta: ItemDelta
    /// The item side, for upserts: encoder and tower in Double (made once per load).
    public let itemEncoder: FeatureEncoder
    public let itemTower: PreciseTower
    /// Where the model and index are freed when the last reference to this bundle goes.
    private let releaseQueue: DispatchQueue

    /// - parameters:
    ///   - indexMappedAt: when `index` was mapped (a bundle sharing an older bundle's index
    ///     passes that one's time).
    ///   - releaseQueue: where the model and index are released (default `ReleaseQueue.shared`).
    public init(model: Model, index: ItemIndex, indexMappedAt: Date = Date(),
                releaseQueue: DispatchQueue = ReleaseQueue.shared) throws(FormatError) {
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
        self.indexMappedAt = indexMappedAt
        self.releaseQueue = releaseQueue
        self.delta = ItemDelta(sequence: Self.baseSequence(index))
        self.itemEncoder = model.encoder(.item)
        self.itemTower = model.itemTower.precise
    }

    private init(sharing other: ServingBundle, delta: ItemDelta) {
        model = other.model
        index = other.index
        userEncoder = other.userEncoder
        chain = other.chain
        userTower = other.userTower
        userFields = other.userFields
        indexMappedAt = other.indexMappedAt
        releaseQueue = other.releaseQueue
        itemEncoder = other.itemEncoder
        itemTower = other.itemTower
        self.delta = delta
    }

    /// This bundle with another delta over the same model and index (nothing is copied).
    public func with(delta: ItemDelta) -> ServingBundle { ServingBundle(sharing: self, delta: delta) }

    /// The last update-log sequence a base index holds (`build-index --updates` writes
    /// `updates_sequence`; 0 for an index built from the catalog alone).
    public static func baseSequence(_ index: ItemIndex) -> UInt64 {
        index.metadata["updates_sequence"].flatMap { UInt64($0) } ?? 0
    }

    /// Items a whole-index request scores (base minus hidden plus upserted).
    public var itemCount: Int { delta.itemCount(base: index) }

    /// Hands the heavy parts to the release queue. The last reference to a replaced bundle is
    /// usually dropped by a scoring worker finishing the last request that started on it;
    /// unmapping a populated 776 MB index (and freeing the embedding tables) there would stall
    /// that worker for tens of ms, so the queue's closure holds the last references instead.
    deinit {
        let parts = (model, index, userEncoder, userTower, delta, itemEncoder, itemTower)
        releaseQueue.async { withExtendedLifetime(parts) {} }
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
