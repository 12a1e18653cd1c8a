import Catalog
import Foundation
import Fusion
import StrictJSON
import Testing
import TwinTower
@testable import PreRankServer
import Benchmarks
import TestWorlds

/// The engine's fused scan: equal to a naive scan (every candidate pushed into the top-K with
/// FusionPolicy.score), parallel splits equal to one thread exactly, request semantics kept.
@Suite struct ScoringEngineKernelTests {
    static let world: BenchWorld = {
        var s = BenchSettings()
        s.items = 5000
        s.tasks = 3
        s.d = 19
        s.k = 50
        s.directory = FileManager.default.temporaryDirectory.appendingPathComponent("prerank-kernel-tests-\(getpid())").path
        return try! BenchWorld.prepare(s) { _ in }
    }()

    func user(_ seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return Self.world.scaledUser(using: &rng)
    }

    static func sameRanking(_ a: TopK, _ b: TopK) -> Bool {
        let x = a.sorted(), y = b.sorted()
        return x.count == y.count && zip(x, y).allSatisfy { $0.id == $1.id && $0.score.bitPattern == $1.score.bitPattern && $0.slot == $1.slot }
    }

    @Test(arguments: [IndexDType.f32, .f16, .i8])
    func fusedScanEqualsNaiveScan(dtype: IndexDType) throws {
        let bundle = try #require(Self.world.bundles[dtype])
        let u = user(3)
        var rng = SplitMix64(seed: 5)
        var rows = Array(Set((0..<3000).map { _ in Int32(rng.next() % 5000) }))
        rows.shuffle(using: &rng)
        for fusion in [FusionPolicy(), FusionPolicy(formula: .additive, alpha: 0.5, beta: 3, gamma: 0.2),
                       FusionPolicy(formula: .multiplicative, alpha: 1, beta: 0.7, gamma: 0)] {
            for k in [1, 50, 4000] {
                let relevance: [Float] = fusion.gamma != 0 ? rows.map { Float($0 % 4) } : []
                let fused = ScoringEngine.rank(index: bundle.index, chain: bundle.chain, fusion: fusion, user: u, rows: rows,
                                               relevance: relevance, k: k).top
                // Naive: probabilities for all, every candidate pushed.
                var probs = [Float](repeating: 0, count: rows.count * 3)
                u.withUnsafeBufferPointer { ub in
                    bundle.index.probabilities(user: ub.baseAddress!, rows: rows, count: rows.count, chain: bundle.chain, into: &probs)
                }
                var naive = TopK(k: k)
                for (i, r) in rows.enumerated() {
                    let s = fusion.score(ctr: probs[i * 3], ctcvr: probs[i * 3 + 2], relevance: relevance.isEmpty ? 0 : relevance[i])
                    naive.push(Ranked(score: s, id: bundle.index.ids[Int(r)], slot: r))
                }
                #expect(Self.sameRanking(fused, naive), "dtype \(dtype) k \(k) fusion \(fusion)")
                let full = ScoringEngine.rank(index: bundle.index, chain: bundle.chain, fusion: fusion, user: u, rows: nil, k: k).top
                #expect(full.count == min(k, 5000))
            }
        }
    }

    @Test(arguments: [2, 3, 7])
    func parallelSplitEqualsOneThread(threads: Int) throws {
        let bundle = try #require(Self.world.bundles[.f32])
        let u = user(11)
        for rows in [nil, (0..<4999).map { Int32(($0 * 7919) % 5000) }] as [[Int32]?] {
            let one = ScoringEngine.rank(index: bundle.index, chain: bundle.chain, fusion: FusionPolicy(), user: u, rows: rows, k: 100)
            let many = ScoringEngine.rank(index: bundle.index, chain: bundle.chain, fusion: FusionPolicy(), user: u, rows: rows, k: 100,
                                          threads: threads)
            #expect(Self.sameRanking(one.top, many.top))
            #expect(one.scored == many.scored && !many.partial)
        }
    }

    @Test func requestSemanticsKept() throws {
        let bundle = try #require(Self.world.bundles[.i8])
        let ids = bundle.index.ids
        // Duplicates scored once, unknown ids listed, order of items by score then id.
        let candidates: [Int64] = [ids[10], ids[20], 7, ids[10], ids[4999], -1, ids[20]]
        let request = PreRankRequest(user: ["user_id": .string("u1")], candidates: candidates, k: 10)
        let options = ScoringOptions(parallelThreshold: 2, parallelism: 2)
        let result = try ScoringEngine.score(request, bundle: bundle, options: options)
        #expect(result.unknownIDs == [7, -1])
        let known: [Int64] = [ids[10], ids[20], ids[4999]].sorted()
        #expect(result.items.map(\.id).sorted() == known)
        #expect(result.scoredCount == 3 && !result.partial)
        for (a, b) in zip(result.items, result.items.dropFirst()) {
            #expect(a.score > b.score || (a.score == b.score && a.id < b.id))
        }
        // Item probabilities are the kernel's, consistent with the score.
        for item in result.items {
            #expect(item.probabilities.count == 3)
            #expect(FusionPolicy().score(ctr: item.probabilities[0], ctcvr: item.probabilities[2]) == item.score)
        }
        // Whole index, split over threads, equals one thread.
        let whole = PreRankRequest(user: ["user_id": .string("u2")], k: 25)
        let a = try ScoringEngine.score(whole, bundle: bundle, options: ScoringOptions(parallelism: 1))
        let b = try ScoringEngine.score(whole, bundle: bundle, options: ScoringOptions(parallelThreshold: 1, parallelism: 2))
        #expect(a.items == b.items && a.items.count == 25)
    }

    /// A quantised index with F32 rescore rows gives the F32 index's answer: with the whole
    /// candidate set rescored, exactly (ids, score and probability bits); at the default depth,
    /// the same probabilities for every item both return and nearly the same set.
    @Test(arguments: [IndexDType.i8, .f16])
    func rescoredAnswersAreTheF32Answers(dtype: IndexDType) throws {
        let f32 = try #require(Self.world.bundles[.f32])
        let quantised = try #require(Self.world.rescoreBundles[dtype])
        #expect(quantised.index.rescore != nil && f32.index.rescore == nil)
        var rng = SplitMix64(seed: 11)
        var recall: [Double] = []
        for r in 0..<12 {
            let ids = Array(Set((0..<2000).map { _ in f32.index.ids[Int(rng.next() % 5000)] }))
            var request = PreRankRequest(requestID: "r\(r)", user: ["user_id": .string("u\(r)"), "age": .number(Double(20 + r))],
                                         query: ["query_terms": .array([.string("t\(r)")])],
                                         candidates: r % 4 == 3 ? nil : ids, k: 40)
            if r % 4 == 1 { request.relevance = ids.indices.map { Double($0 % 4) } }
            if r % 4 == 2 { request.candidates = ids + [999_999_999] + ids.prefix(50) }  // unknown and duplicates
            var options = ScoringOptions(fusion: FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0.3))
            let want = try ScoringEngine.score(request, bundle: f32, options: options)
            options.rescoreDepth = 5000
            let all = try ScoringEngine.score(request, bundle: quantised, options: options)
            #expect(all.items == want.items, "request \(r): a full rescore is the F32 answer")
            #expect(all.unknownIDs == want.unknownIDs && all.rescored == min(5000, all.scoredCount))
            options.rescoreDepth = nil
            let deflt = try ScoringEngine.score(request, bundle: quantised, options: options)
            #expect(deflt.rescored == min(max(4 * 40, 256), deflt.scoredCount))
            let byID = Dictionary(uniqueKeysWithValues: want.items.map { ($0.id, $0) })
            for item in deflt.items {
                if let w = byID[item.id] { #expect(item == w, "request \(r) item \(item.id)") }
            }
            recall.append(Double(deflt.items.filter { byID[$0.id] != nil }.count) / Double(want.items.count))
        }
        #expect(recall.reduce(0, +) / Double(recall.count) >= 0.97)
    }

    @Test func expiredDeadlineIsPartialOr504() throws {
        let bundle = try #require(Self.world.bundles[.f32])
        let request = PreRankRequest(user: ["user_id": .string("u3")], k: 5)
        #expect(throws: APIError.self) { try ScoringEngine.score(request, bundle: bundle, options: ScoringOptions(), deadline: 1) }
    }

    /// Ties (identical vectors) rank by id ascending, in the fused scan and across threads.
    @Test func tiesBreakByIdAscending() throws {
        let n = 3000, t = 3, d = 8
        let vectors = (0..<(n * t * d)).map { i in Float((i / (t * d)) % 3) * 0.1 + Float(i % d) * 0.01 }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ties-\(UUID().uuidString).st").path
        _ = try IndexBuilder.write(ids: (0..<n).map { Int64($0) * 2 }, vectors: vectors, taskNames: ["a", "b", "c"], d: d,
                                   dtype: .f32, fingerprint: "fp", modelVersion: "v", output: path)
        let index = try ItemIndex(path: path)
        let chain = LogitChain(architecture: Architecture(hidden: [], d: d, fr: true, lr: true, clamp: false, chain: .additive),
                               headBias: [-1, -1, -1])
        let u = [Float](repeating: 0.5, count: t * d)
        for threads in [1, 2] {
            let top = ScoringEngine.rank(index: index, chain: chain, fusion: FusionPolicy(), user: u, rows: nil, k: 40, threads: threads)
                .top.sorted()
            // Rows with (row % 3 == 2) have the best score; ties by id ascending.
            let want: [Int64] = (0..<40).map { (i: Int) -> Int64 in Int64(2 + 3 * i) * 2 }
            #expect(top.map(\.id) == want)
        }
    }
}

/// The benchmark's plumbing on a tiny world (no wall-clock assertions).
@Suite struct BenchTests {
    @Test func benchProducesEveryFigure() throws {
        var s = BenchSettings()
        s.items = 3000
        s.d = 16
        s.candidates = 500
        s.k = 20
        s.repeats = 1
        s.gatherRepeats = 4
        s.directory = FileManager.default.temporaryDirectory.appendingPathComponent("prerank-bench-test-\(getpid())").path
        let report = try ScoringBenchmark.run(s) { _ in }
        for dtype in ["f32", "f16", "i8"] {
            #expect(report.figures.contains { $0.dtype == dtype && $0.scenario == "whole" && $0.name.hasPrefix("fused") })
            #expect(report.figures.contains { $0.dtype == dtype && $0.scenario == "gather" && $0.ratio != nil })
            #expect(report.figures.contains { $0.dtype == dtype && $0.scenario == "request" })
        }
        let recall = report.figures.filter { $0.name.hasPrefix("recall") }.compactMap(\.value)
        #expect(recall.count == 6)  // whole and gather for F16 and I8, and each with rescore rows
        #expect(report.figures.contains { $0.dtype == "i8+rescore" && $0.name.hasPrefix("rescore the best") })
        #expect(recall.allSatisfy { (r: Double) -> Bool in r > 0.8 && r <= 1 })
        #expect(ScoringBenchmark.recall([[1, 2, 3, 4]], [[4, 3, 9, 1]]) == 0.75)
    }
}
