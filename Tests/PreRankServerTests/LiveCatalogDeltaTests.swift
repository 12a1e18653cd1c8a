import Catalog
import Foundation
import Fusion
import Logging
import Testing
import TwinTower
@testable import PreRankServer
import TestWorlds

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
        // A third change over the delta's own rows: 50 new items upserted again with other rows
        // (their first rows go stale), 20 other new items deleted.
        let reupserted = (0..<50).map { (added[$0 * 3].0, all[$0 * 5 + 1].1) }
        let deletedNew = (0..<20).map { added[$0 * 3 + 1].0 }
        var final: [Int64: [Float]] = Dictionary(uniqueKeysWithValues: baseItems)
        for (id, v) in added + overrides + reupserted { final[id] = v }
        for id in deleted + deletedNew { final[id] = nil }
        let rebuilt = try write(final.map { ($0.key, $0.value) }, dtype: dtype, rescore: rescore, name: "rebuilt")
        // Two changes, as two requests would make them: the new items, then overrides + deletes.
        var delta = ItemDelta()
        delta = delta.applying(ids: added.map(\.0), vectors: added.flatMap(\.1), deletes: [], sequence: 1, base: base)
        delta = delta.applying(ids: overrides.map(\.0), vectors: overrides.flatMap(\.1), deletes: deleted + [-5, -6, -7],
                               sequence: 2, base: base)
        delta = delta.applying(ids: reupserted.map(\.0), vectors: reupserted.flatMap(\.1), deletes: deletedNew, sequence: 3, base: base)
        return Scenario(base: base, rebuilt: rebuilt, delta: delta, newIDs: added.map(\.0), overridden: overridden, deleted: deleted)
    }

    @Test func resolutionOverrideAndDelete() throws {
        let s = try Self.scenario(dtype: .f32, rescore: false)
        #expect(s.delta.sequence == 3)
        #expect(s.delta.upsertedCount == 680)
        #expect(s.delta.staleCount == 70)
        // 50 base ids and 20 delta ids; the 3 unknown ids (-5, -6, -7) are not recorded.
        #expect(s.delta.deletedIDs.count == 70 && !s.delta.deletedIDs.contains(-5))
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
        let back = s.delta.applying(ids: [s.deleted[0]], vectors: Self.rows[0].1, deletes: [s.newIDs[2]], sequence: 4, base: s.base)
        guard case .delta = back.resolve(s.deleted[0], base: s.base) else { Issue.record("a re-upserted id is served"); return }
        #expect(back.resolve(s.newIDs[2], base: s.base) == .unknown)
        #expect(back.deletedIDs.contains(s.newIDs[2]) && !back.deletedIDs.contains(s.deleted[0]))
        #expect(back.itemCount(base: s.base) == s.rebuilt.count)
    }

    /// 40 small changes (repeated ids within a change, overrides of delta rows, deletes) grow
    /// the delta past its first arena (compaction), and a change applied to an old value forks
    /// it: every value keeps answering for its own history, row by row and bit by bit.
    @Test(arguments: [(IndexDType.i8, false), (.i8, true), (.f32, false)])
    func manySmallChangesAndForksKeepEveryValueIntact(dtype: IndexDType, rescore: Bool) throws {
        let all = Self.rows
        let base = try Self.write(Array(all[0..<1000]), dtype: dtype, rescore: rescore, name: "fork")
        let t = base.taskCount, d = base.d
        var rng = SplitMix64(seed: 3)
        func pick() -> (Int64, [Float]) {
            (all[Int(rng.next() % UInt64(all.count))].0, all[Int(rng.next() % UInt64(all.count))].1)
        }
        typealias State = (delta: ItemDelta, rows: [Int64: [Float]], deleted: Set<Int64>)
        func step(_ s: State, sequence: UInt64, deletes: Int) -> State {
            let upserts = (0..<50).map { _ in pick() }
            let ids = Set(upserts.map(\.0))
            let dels = (0..<deletes).map { _ in pick().0 }.filter { !ids.contains($0) }
            var next = s
            next.delta = s.delta.applying(ids: upserts.map(\.0), vectors: upserts.flatMap(\.1), deletes: dels, sequence: sequence, base: base)
            for (id, v) in upserts { next.rows[id] = v; next.deleted.remove(id) }
            for id in dels { next.rows[id] = nil; next.deleted.insert(id) }
            return next
        }
        func check(_ s: State, _ label: String) {
            #expect(s.delta.upsertedCount == s.rows.count, "\(label)")
            for (id, v) in s.rows {
                guard case .delta(let r) = s.delta.resolve(id, base: base) else { Issue.record("\(label): \(id) not in the delta"); return }
                // The F32 row where the arena holds one (F32 rows, rescore rows), else none.
                #expect(s.delta.vector(of: id) == (dtype == .f32 || rescore ? v : nil), "\(label): F32 row of \(id)")
                let (q, scales) = Quantization.int8(v, rows: t, width: d)
                for k in 0..<t {
                    let stored = s.delta.index!.vector(row: Int(r), task: k)
                    let expected = dtype == .i8 ? (0..<d).map { Float(q[k * d + $0]) * scales[k] } : Array(v[(k * d)..<((k + 1) * d)])
                    #expect(stored == expected, "\(label): stored bits of \(id)")
                }
            }
            for id in s.deleted { #expect(s.delta.resolve(id, base: base) == .unknown, "\(label): deleted \(id)") }
            let untouched = (0..<base.count).first { s.rows[base.ids[$0]] == nil && !s.deleted.contains(base.ids[$0]) }!
            #expect(s.delta.resolve(base.ids[untouched], base: base) == .base(Int32(untouched)))
            #expect(s.delta.itemCount(base: base) == base.count + s.rows.keys.filter { base.row(of: $0) < 0 }.count
                - s.deleted.filter { base.row(of: $0) >= 0 }.count)
        }
        var states: [State] = [(ItemDelta(), [:], [])]
        for i in 1...40 { states.append(step(states[i - 1], sequence: UInt64(i), deletes: i % 4 == 0 ? 8 : 0)) }
        #expect(states[40].delta.staleCount > 0)
        let fork = step(states[10], sequence: 99, deletes: 8)
        let forkAgain = step(states[10], sequence: 100, deletes: 0)
        for (s, label) in [(states[10], "value 10"), (states[25], "value 25"), (states[40], "value 40"), (fork, "fork"),
                           (forkAgain, "second fork")] {
            check(s, label)
        }
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

    /// Issue #21 "bounded growth": deletes of ids the catalog does not hold (never seen, or
    /// deleted already) leave the delta as it was, however many arrive.
    @Test func deletesOfUnheldIdsAreNotRecorded() throws {
        let s = try Self.scenario(dtype: .f32, rescore: false)
        let noise = (0..<10_000).map { Int64(-1_000_000 - $0) }
        let after = s.delta.applying(ids: [], vectors: [], deletes: noise + s.deleted, sequence: 4, base: s.base)
        #expect(after.deletedIDs == s.delta.deletedIDs)
        #expect(after.hiddenCount == s.delta.hiddenCount && after.upsertedCount == s.delta.upsertedCount)
        #expect(after.sequence == 4)
        // A held id is still deleted and recorded.
        let held = s.delta.applying(ids: [], vectors: [], deletes: [s.base.ids[1]], sequence: 5, base: s.base)
        #expect(held.deletedIDs.count == s.delta.deletedIDs.count + 1 && held.resolve(s.base.ids[1], base: s.base) == .unknown)
    }

    /// A fresh path for an update log (UpdateLogTests has its own, in CatalogTests).
    static func temporaryLogPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prerank-updatelog-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        return path
    }

    /// Issue #21 "work done once": a fusion-only canary serves the primary's bundle; a change is
    /// embedded by one tower pass, both arms get the same new bundle, and a replay runs once.
    @Test func aFusionOnlyCanaryEmbedsAppliesAndReplaysOnce() throws {
        let index = Self.world.bundles[.f32]!.index
        let shared = try Self.bundle(index)
        var config = PreRankConfig()
        config.model.updates = Self.temporaryLogPath("shared-\(UUID().uuidString).log")
        let snap = ServingSnapshot(config: config, options: ScoringOptions(), primary: shared, canary: shared, adminToken: nil)
        let catalog = LiveCatalog(logger: Logger(label: "test"))
        let attached = try catalog.attach(snap, previous: nil)
        let change = CatalogChange(upserts: (0..<5).map { .init(id: Int64(9_000_000 + $0), row: FeatureRow()) }, deletes: [])
        let (next, applied) = try catalog.apply(change, to: attached)
        #expect(applied.sequence == 1 && applied.upserted == 5)
        #expect(catalog.towerRows == 5)
        #expect(next.primary === next.canary && next.primary.delta.upsertedCount == 5)
        // A restart: the first writer lets go of the log (a config without model.updates closes
        // it; the lock is per open file, so in one process it stands for the old server), then
        // the log is replayed once for both arms.
        _ = try catalog.attach(ServingSnapshot(config: PreRankConfig(), options: ScoringOptions(), primary: shared, canary: shared,
                                               adminToken: nil), previous: next)
        let restarted = LiveCatalog(logger: Logger(label: "test"))
        let replayed = try restarted.attach(ServingSnapshot(config: config, options: ScoringOptions(), primary: shared, canary: shared,
                                                            adminToken: nil), previous: nil)
        #expect(restarted.towerRows == 5)
        #expect(replayed.primary === replayed.canary && replayed.primary.delta.upsertedCount == 5)
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
