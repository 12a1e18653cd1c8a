import Catalog
import Foundation
import Synchronization
import Logging
import Testing
import TwinTower
@testable import PreRankServer

/// Reloads share unchanged files and free replaced ones off the request path (issue #10):
/// a tiny model and index written to a temporary directory, rewritten the way writers do it
/// (a new file renamed over the old one).
@Suite struct ServingCacheTests {
    static let spec = ModelSpec(version: "v1", tasks: [TaskSpec(name: "ctr", label: "click"), TaskSpec(name: "ctcvr", label: "order")],
                                architecture: Architecture(hidden: [4], d: 3, fr: true, lr: true, clamp: false, chain: .additive),
                                features: [FeatureSpec(name: "user_id", side: .user, kind: .categorical, buckets: 11, dim: 2),
                                           FeatureSpec(name: "item_id", side: .item, kind: .categorical, buckets: 13, dim: 2)])

    struct World {
        let dir: String
        var modelDir: String { dir + "/model" }
        var indexPath: String { dir + "/index.st" }

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("prerank-cache-\(UUID().uuidString)").path
            try writeModel(version: "v1", seed: 1)
            try writeIndex(items: 5)
        }

        /// Writes into a new directory and renames it over the old one, as a model deploy does.
        func writeModel(version: String, seed: UInt64) throws {
            var rng = SplitMix64(seed: seed)
            var spec = ServingCacheTests.spec
            spec.version = version
            let tmp = dir + "/model.tmp"
            try ModelStore.save(ModelStore.random(spec: spec, using: &rng), directory: tmp)
            try? FileManager.default.removeItem(atPath: modelDir)
            try FileManager.default.moveItem(atPath: tmp, toPath: modelDir)
        }

        func writeIndex(items: Int) throws {
            let model = try ModelStore.load(directory: modelDir)
            let vectors = (0..<(items * 2 * 3)).map { Float($0 % 7) / 10 }
            _ = try IndexBuilder.write(ids: (0..<items).map { Int64($0 + 1) }, vectors: vectors, taskNames: ["ctr", "ctcvr"], d: 3,
                                       dtype: .f32, fingerprint: model.fingerprint, modelVersion: model.spec.version,
                                       output: indexPath + ".tmp")
            #expect(rename(indexPath + ".tmp", indexPath) == 0)
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test func unchangedFilesAreSharedNotReloaded() throws {
        let w = try World()
        defer { w.remove() }
        let cache = ServingCache()
        let first = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        let second = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        #expect(first === second)
        #expect(cache.loadCounts == .init(modelLoads: 1, indexLoads: 1, modelsReused: 1, indexesReused: 1))
    }

    @Test func aNewIndexFileIsMappedAndTheModelShared() throws {
        let w = try World()
        defer { w.remove() }
        let cache = ServingCache()
        let first = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        try w.writeIndex(items: 9)
        let second = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        #expect(second.index !== first.index && second.index.count == 9)
        #expect(second.model.fingerprint == first.model.fingerprint)
        #expect(cache.loadCounts == .init(modelLoads: 1, indexLoads: 2, modelsReused: 1, indexesReused: 0))
    }

    @Test func aNewModelJSONWithTheSameWeightsSharesTheIndex() throws {
        let w = try World()
        defer { w.remove() }
        let cache = ServingCache()
        let first = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        try w.writeModel(version: "v2", seed: 1)   // same weights (same seed), new model.json
        let second = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        #expect(second.version == "v2" && second.index === first.index)
        #expect(second.indexMappedAt == first.indexMappedAt, "/v1/model shows the index was not re-mapped")
        #expect(cache.loadCounts == .init(modelLoads: 2, indexLoads: 1, modelsReused: 0, indexesReused: 1))
    }

    @Test func aModelWithNewWeightsIsRefusedWithTheOldIndexAndTheCacheKeepsServing() throws {
        let w = try World()
        defer { w.remove() }
        let cache = ServingCache()
        let first = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        cache.commit()
        try w.writeModel(version: "v2", seed: 2)   // new weights: the index's fingerprint no longer matches
        #expect(throws: FormatError.self) { try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath) }
        cache.discard()
        // The committed bundle is still what the unchanged index is shared under.
        let loads = cache.loadCounts.indexLoads
        try w.writeModel(version: "v1", seed: 1)
        let again = try cache.bundle(modelDirectory: w.modelDir, indexPath: w.indexPath)
        #expect(again.index === first.index && cache.loadCounts.indexLoads == loads)
    }

    @Test func theLastReferenceFreesTheIndexOnTheReleaseQueue() throws {
        let w = try World()
        defer { w.remove() }
        let queue = DispatchQueue(label: "test.release")
        queue.suspend()
        weak var weakIndex: ItemIndex?
        do {
            let model = try ModelStore.load(directory: w.modelDir)
            let index = try ItemIndex(path: w.indexPath, model: model)
            weakIndex = index
            _ = try ServingBundle(model: model, index: index, releaseQueue: queue)
        }
        // The bundle is gone on this thread, but its index waits on the (suspended) release queue.
        #expect(weakIndex != nil)
        queue.resume()
        queue.sync {}
        #expect(weakIndex == nil)
    }

    @Test func aConfigOnlyReloadSwapsConfigAndSharesTheBundle() throws {
        let w = try World()
        defer { w.remove() }
        let configPath = w.dir + "/prerank.yaml"
        func writeConfig(beta: Double) throws {
            try "model: {dir: \(w.modelDir), index: \(w.indexPath)}\nfusion: {beta: \(beta)}\n"
                .write(toFile: configPath, atomically: true, encoding: .utf8)
        }
        try writeConfig(beta: 20)
        let metrics = MetricsRegistry()
        let cache = ServingCache(metrics: metrics)
        let initial = try ServingSnapshot.load(config: try ConfigLoader.load(path: configPath), parallelism: 1, cache: cache)
        cache.commit()
        let app = PreRankApp(initial: initial, configPath: configPath, overrides: { $0 }, metrics: metrics,
                             logger: Logger(label: "test"), workers: 1, cache: cache)
        defer { app.shutdown() }
        try writeConfig(beta: 3)
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<ReloadOutcome, ReloadError>?>(nil)
        app.reload(trigger: "test") { r in
            result.withLock { $0 = r }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        let next = try #require(try result.withLock { $0 }?.get().snapshot)
        #expect(next.options.fusion.beta == 3 && initial.options.fusion.beta == 20)
        #expect(next.primary === initial.primary, "config-only: the model and index are not touched")
        #expect(app.current === next)
        let text = metrics.render()
        #expect(text.contains("prerank_index_loads_total 1\n") && text.contains("prerank_model_loads_total 1\n"))
        #expect(text.contains("prerank_reload_reused_total{part=\"index\"} 1\n"))
    }
}
