import Foundation
import Fusion
import Testing
import TwinTower
@testable import PreRankServer
@testable import Benchmarks

/// The live catalog's delta over a base index (`ItemDelta`): resolution, override, delete,
/// whole-index requests, and exactness — a base plus a delta answers bit for bit like an index
/// rebuilt with the same items, for every dtype (the delta stores rows as `build-index` would).
@Suite struct LiveCatalogDeltaTests {
    static let world: BenchWorld = {
        var s = BenchSettings()
        s.items = 3000
        s.tasks = 3
        s.d = 16
        s.k = 50
        s.directory = FileManager.default.temporaryDirectory.appendingPathComponent("prerank-delta-tests-\(getpid())").path
        return try! BenchWorld.prepare(s) { _ in }
    }()

    static var directory: String { FileManager.default.temporaryDirectory.appendingPathComponent("prerank-delta-tests-\(getpid())").path }

    /// Every item's F32 row `[T × d]`, by id, from the world's F32 index.
    static let rows: [(Int64, [Float])] = {
        let index = world.bundles[.f32]!.index
        return (0..<index.count).map { r in (index.ids[r], (0..<index.taskCount).flatMap { index.vector(row: r, task: $0) }) }
    }()

    static func write(_ items: [(Int64, [Float])], dtype: IndexDType, rescore: Bool, name: String) throws -> ItemIndex {
        let sorted = items.sorted { $0.0 < $1.0 }
        let model = world.model
        // Unique per call: test cases run in parallel and must not share a file.
        let path = directory + "/\(name)-\(dtype.rawValue)\(rescore ? "r" : "")-\(UUID().uuidString).st"
        _ = try IndexBuilder.write(ids: sorted.map(\.0), vectors: sorted.flatMap(\.1), taskNames: model.taskNames, d: model.d,
                                   dtype: dtype, fingerprint: model.fingerprint, modelVersion: model.spec.version, output: path,
                                   rescore: rescore)
        return try ItemIndex(path: path, model: model)
    }

    /// The base is the first 2400 items; the change adds 600 new ones, overrides 100 base items
    /// with other rows and deletes 50 base ids plus 3 unknown ones.
    struct Scenario {
        var base: ItemIndex
        var rebuilt: ItemIndex
        var delta: ItemDelta
        var newIDs: [Int64]
        var overridden: [Int64]
        var deleted: [Int64]
    }

    static func scenario(dtype: IndexDType, rescore: Bool) throws -> Scenario {
        let all = rows
        let baseItems = Array(all[0..<2400])
        let added = Array(all[2400...])
        let overridden = (0..<100).map { baseItems[$0 * 7].0 }
        let overrides = overridden.enumerated().map { i, id in (id, all[2999 - i].1) }
        let deleted = (0..<50).map { baseItems[700 + $0 * 11 + 3].0 }  // none of them overridden
        let base = try write(baseItems, dtype: dtype, rescore: rescore, name: "base")
        var final: [Int64: [Float]] = Dictionary(uniqueKeysWithValues: baseItems)
        for (id, v) in added + overrides { final[id] = v }
        for id in deleted { final[id] = nil }
        let rebuilt = try write(final.map { ($0.key, $0.value) }, dtype: dtype, rescore: rescore, name: "rebuilt")
        // Two changes, as two requests would make them: the new items, then overrides + deletes.
        var delta = ItemDelta()
        delta = delta.applying(ids: added.map(\.0), vectors: added.flatMap(\.1), deletes: [], sequence: 1, base: base)
        delta = delta.applying(ids: overrides.map(\.0), vectors: overrides.flatMap(\.1), deletes: deleted + [-5, -6, -7],
                               sequence: 2, base: base)
        return Scenario(base: base, rebuilt: rebuilt, delta: delta, newIDs: added.map(\.0), overridden: overridden, deleted: deleted)
    }

    @Test func resolutionOverrideAndDelete() throws {
        let s = try Self.scenario(dtype: .f32, rescore: false)
        #expect(s.delta.sequence == 2)
        #expect(s.delta.upsertIDs.count == 700)
        #expect(s.delta.deletedIDs.count == 53)
        #expect(s.delta.hiddenCount == 150)
        #expect(s.delta.itemCount(base: s.base) == s.rebuilt.count)
        guard case .delta = s.delta.resolve(s.newIDs[0], base: s.base) else { Issue.record("a new id resolves to the delta"); return }
        guard case .delta(let r) = s.delta.resolve(s.overridden[3], base: s.base) else { Issue.record("an override resolves to the delta"); return }
        #expect(s.delta.index!.ids[Int(r)] == s.overridden[3])
        #expect(s.delta.resolve(s.deleted[0], base: s.base) == .unknown)
        #expect(s.delta.resolve(-5, base: s.base) == .unknown)
        let untouched = s.base.ids[1]
        #expect(s.delta.resolve(untouched, base: s.base) == .base(1))
        // Upserting a deleted id brings it back; deleting an upserted one removes its row.
        let back = s.delta.applying(ids: [s.deleted[0]], vectors: Self.rows[0].1, deletes: [s.newIDs[0]], sequence: 3, base: s.base)
        guard case .delta = back.resolve(s.deleted[0], base: s.base) else { Issue.record("a re-upserted id is served"); return }
        #expect(back.resolve(s.newIDs[0], base: s.base) == .unknown)
        #expect(back.deletedIDs.contains(s.newIDs[0]) && !back.deletedIDs.contains(s.deleted[0]))
        #expect(back.itemCount(base: s.base) == s.rebuilt.count)
    }

    static func bundle(_ index: ItemIndex, delta: ItemDelta? = nil) throws -> ServingBundle {
        let b = try ServingBundle(model: world.model, index: index)
        return delta.map { b.with(delta: $0) } ?? b
    }

    @Test(arguments: [(IndexDType.f32, false), (.f16, false), (.i8, false), (.i8, true), (.f16, true)])
    func baseWithDeltaAnswersLikeARebuiltIndex(dtype: IndexDType, rescore: Bool) throws {
        let s = try Self.scenario(dtype: dtype, rescore: rescore)
        let live = try Self.bundle(s.base, delta: s.delta)
        let rebuilt = try Self.bundle(s.rebuilt)
        var rng = SplitMix64(seed: 9)
        let pool = Self.rows.map(\.0) + [-5, 123_456_789]
        for trial in 0..<6 {
            var candidates: [Int64]? = (0..<(trial * 300 + 50)).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
            if trial == 5 { candidates = nil }  // the whole index
            let relevance = candidates.map { c in c.indices.map { Double($0 % 4) } }
            let request = PreRankRequest(user: ["user_id": .string("u\(trial)"), "age": .number(30)], candidates: candidates,
                                         relevance: trial % 2 == 0 ? relevance : nil, k: trial == 5 ? 400 : 40)
            let options = ScoringOptions(fusion: FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0.1),
                                         parallelThreshold: 1000, parallelism: 3, rescoreDepth: 120)
            let a = try ScoringEngine.score(request, bundle: live, options: options)
            let b = try ScoringEngine.score(request, bundle: rebuilt, options: options)
            #expect(a.items.count == b.items.count)
            #expect(a.items.map(\.id) == b.items.map(\.id), "dtype \(dtype) rescore \(rescore) trial \(trial)")
            #expect(a.items.map(\.score.bitPattern) == b.items.map(\.score.bitPattern))
            #expect(a.items.map { $0.probabilities.map(\.bitPattern) } == b.items.map { $0.probabilities.map(\.bitPattern) })
            #expect(a.unknownIDs == b.unknownIDs)
            #expect(a.candidateCount == b.candidateCount)
            #expect(a.rescored == b.rescored)
        }
    }

    @Test func emptyDeltaLeavesTheEngineAsItWas() throws {
        let index = Self.world.bundles[.f32]!.index
        let plain = try Self.bundle(index)
        #expect(plain.delta.isEmpty && plain.itemCount == index.count)
        let onlyUnknownDeletes = plain.with(delta: ItemDelta().applying(ids: [], vectors: [], deletes: [-1], sequence: 1, base: index))
        #expect(onlyUnknownDeletes.delta.hiddenCount == 0 && onlyUnknownDeletes.itemCount == index.count)
        let request = PreRankRequest(user: ["user_id": .string("u1")], candidates: nil, k: 30)
        let a = try ScoringEngine.score(request, bundle: plain, options: ScoringOptions())
        let b = try ScoringEngine.score(request, bundle: onlyUnknownDeletes, options: ScoringOptions())
        #expect(a.items == b.items)
    }
}
