import Catalog
import Foundation
import Synchronization
import TwinTower

/// The models and indexes behind the snapshot in force, keyed by what they are on disk, so a
/// reload shares what did not change instead of reading and mapping it again (issue #10: re-reading
/// a 776 MB index and faulting it in on every SIGHUP was the latency cliff).
///
/// A model directory is unchanged when `model.json` and `weights.safetensors` have the same file
/// identity (device, inode, size, mtime); an index when its file identity is the same and its
/// header still declares the model fingerprint it was loaded against. Anything else is loaded
/// afresh, checked as before, and a failure leaves the cache as it was.
///
/// Used from one reload at a time (the app's serial reload queue, or start-up before it exists).
/// Holds only the parts of the last committed snapshot, never a replaced model or index, so it
/// keeps nothing resident beyond what is serving.
public final class ServingCache: @unchecked Sendable {
    // `committed` and `staged` are touched only by the single loader; `counts` is read by /metrics.
    private var committed: [Entry] = []
    private var staged: [Entry] = []
    private let counts = Mutex(Counts())
    private let metrics: MetricsRegistry?

    /// Loads and reuses since start.
    public struct Counts: Sendable, Equatable {
        public var modelLoads = 0
        public var indexLoads = 0
        public var modelsReused = 0
        public var indexesReused = 0
    }

    struct ModelKey: Hashable {
        var directory: String
        var spec: FileIdentity
        var weights: FileIdentity
    }

    struct IndexKey: Hashable {
        var path: String
        var file: FileIdentity
        var fingerprint: String
    }

    struct Entry {
        var model: ModelKey
        var index: IndexKey
        var bundle: ServingBundle
    }

    public init(metrics: MetricsRegistry? = nil) {
        self.metrics = metrics
    }

    public var loadCounts: Counts { counts.withLock { $0 } }

    /// The bundle for `modelDirectory` + `indexPath`: shared whole, or built from a shared model
    /// or index, or loaded; staged until `commit`.
    public func bundle(modelDirectory: String, indexPath: String) throws(FormatError) -> ServingBundle {
        let modelKey = Self.modelKey(modelDirectory)
        let indexKey = Self.indexKey(indexPath)
        let known = staged + committed
        if let modelKey, let indexKey, let hit = known.first(where: { $0.model == modelKey && $0.index == indexKey }) {
            record { $0.modelsReused += 1; $0.indexesReused += 1 }
            stage(hit)
            return hit.bundle
        }
        let model: Model
        if let modelKey, let hit = known.first(where: { $0.model == modelKey }) {
            model = hit.bundle.model
            record { $0.modelsReused += 1 }
        } else {
            model = try ModelStore.load(directory: modelDirectory)
            record { $0.modelLoads += 1 }
        }
        let bundle: ServingBundle
        if let indexKey, indexKey.fingerprint == model.fingerprint, let hit = known.first(where: { $0.index == indexKey }) {
            bundle = try ServingBundle(model: model, index: hit.bundle.index, indexMappedAt: hit.bundle.indexMappedAt)
            record { $0.indexesReused += 1 }
        } else {
            let index = try ItemIndex(path: indexPath, model: model, populate: true, residency: .hugePages)
            record { $0.indexLoads += 1 }
            bundle = try ServingBundle(model: model, index: index)
        }
        // A file whose identity could not be read is loaded every time and never shared.
        if let modelKey, let indexKey {
            stage(Entry(model: modelKey, index: indexKey, bundle: bundle))
        }
        return bundle
    }

    /// The staged bundles become the shared ones (the snapshot using them is in force); replaced
    /// ones are dropped here, on the reload queue, never on a request's thread.
    public func commit() {
        committed = staged
        staged = []
    }

    /// Forgets what a rejected reload staged.
    public func discard() {
        staged = []
    }

    private func stage(_ entry: Entry) {
        if !staged.contains(where: { $0.model == entry.model && $0.index == entry.index }) { staged.append(entry) }
    }

    private func record(_ change: (inout Counts) -> Void) {
        let now = counts.withLock { c -> Counts in
            change(&c)
            return c
        }
        metrics?.setLoadCounts(modelLoads: now.modelLoads, indexLoads: now.indexLoads,
                               modelsReused: now.modelsReused, indexesReused: now.indexesReused)
    }

    static func modelKey(_ directory: String) -> ModelKey? {
        let dir = directory as NSString
        guard let spec = FileIdentity.of(dir.appendingPathComponent(ModelStore.specFile)),
              let weights = FileIdentity.of(dir.appendingPathComponent(ModelStore.weightsFile)) else { return nil }
        return ModelKey(directory: directory, spec: spec, weights: weights)
    }

    static func indexKey(_ path: String) -> IndexKey? {
        guard let file = FileIdentity.of(path), let meta = IndexHeader.metadata(path: path) else { return nil }
        return IndexKey(path: path, file: file, fingerprint: meta["model_fingerprint"] ?? "")
    }
}
