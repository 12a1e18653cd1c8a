#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Catalog
import Dispatch
import Foundation
import Fusion
import PreRankServer
import TestWorlds
import TwinTower

/// `prerank bench`: the scoring kernels and the request stages, each figure beside a baseline
/// measured in the same run, repetition by repetition (this box is shared and noisy, so ratios
/// of medians taken side by side are what to compare, not absolute times across runs).
///
/// Scenarios (defaults: N = 1M items, T = 3, d = 64, 10k candidates, k = 100):
///   - `whole`  : the whole index, fused scoring + fusion + top-K, against a streaming read of the
///                same bytes (vectors, plus scales for I8) and a naive scalar loop.
///   - `gather` : 10k random candidates of the index (a fresh random set every repetition, so
///                rows come from memory, not cache), against a streaming read of the same number
///                of bytes, the kernel without prefetch, and the naive scalar loop.
///   - `request`: one whole request through `ScoringEngine.score` (user tower, score, top-K),
///                with parse and encode stand-ins (see `BenchFigure.note`).
///   - `recall` : recall@k of F16 / I8 against F32 for the same users and candidates.
///   - `codec`  : the request decoder and response encoder against Foundation (`CodecBenchmark`;
///                not in the default set).
public enum ScoringBenchmark {
    /// Runs every scenario; `log` receives progress lines.
    public static func run(_ s: BenchSettings, log: (String) -> Void) throws(FormatError) -> BenchReport {
        // The codec scenario needs no world: run alone, it writes no model or index.
        var figures = s.scenarios.contains("codec") ? CodecBenchmark.figures(repeats: s.gatherRepeats, log: log) : []
        guard !s.scenarios.isDisjoint(with: ["whole", "gather", "request"]) else {
            return BenchReport(items: s.items, tasks: s.tasks, d: s.d, candidates: s.candidates, k: s.k,
                               cores: ScoringOptions.cores, figures: figures)
        }
        let world = try BenchWorld.prepare(s, log: log)
        var rng = SplitMix64(seed: s.seed &+ 1)
        let users = (0..<16).map { _ in world.scaledUser(using: &rng) }
        let fusion = FusionPolicy()

        // Candidate sets: a fresh random set per repetition (distinct rows within a set).
        let sets: [[Int32]] = (0..<s.gatherRepeats).map { _ in
            var seen = Set<Int32>()
            var rows: [Int32] = []
            rows.reserveCapacity(s.candidates)
            while rows.count < min(s.candidates, s.items) {
                let r = Int32(truncatingIfNeeded: Int(rng.next() % UInt64(s.items)))
                if seen.insert(r).inserted { rows.append(r) }
            }
            return rows
        }

        var wholeP50: [IndexDType: Double] = [:]
        var gatherP50: [IndexDType: Double] = [:]
        var topWhole: [IndexDType: [[Int64]]] = [:]
        var topGather: [IndexDType: [[Int64]]] = [:]

        var checksum: UInt64 = 0
        for dtype in s.dtypes {
            guard let bundle = world.bundles[dtype] else { continue }
            let index = bundle.index
            let chain = bundle.chain
            let rowBytes = index.vectorBytes / index.count
            if s.scenarios.contains("whole") {
            log("bench \(dtype.rawValue): whole index (\(s.repeats) repetitions)")

            // Whole index: stream read vs fused, interleaved; then parallel.
            var stream: [Double] = [], fused: [Double] = [], parallel: [Double] = []
            for rep in 0..<s.repeats {
                let user = users[rep % users.count]
                stream.append(time { checksum &+= streamAll(index) })
                fused.append(time { _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: nil, k: s.k) })
                if s.threads > 1 {
                    parallel.append(time {
                        _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: nil, k: s.k, threads: s.threads)
                    })
                }
            }
            let bytes = Double(index.vectorBytes)
            let sP50 = median(stream)
            figures.append(figure("whole", dtype, "stream read (baseline)", stream, bytes: bytes))
            figures.append(figure("whole", dtype, "fused score+fusion+top-\(s.k), 1 thread", fused, bytes: bytes,
                                  baseline: "stream read (baseline)", baseP50: sP50))
            if !parallel.isEmpty {
                figures.append(figure("whole", dtype, "fused, \(s.threads) threads", parallel, bytes: bytes,
                                      baseline: "stream read (baseline)", baseP50: sP50))
            }
            wholeP50[dtype] = median(fused)
            if s.naive {
                var naive: [Double] = []
                for rep in 0..<max(1, min(3, s.repeats)) {
                    naive.append(time { _ = naiveRank(index: index, chain: chain, fusion: fusion, user: users[rep % users.count], rows: nil, k: s.k) })
                }
                figures.append(figure("whole", dtype, "naive scalar loop", naive, bytes: bytes,
                                      baseline: "fused score+fusion+top-\(s.k), 1 thread", baseP50: median(fused)))
            }
            topWhole[dtype] = users.map { user in
                ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: nil, k: s.k).top.sorted().map(\.id)
            }

            }
            if s.scenarios.contains("gather") {
            // Gathered candidates.
            log("bench \(dtype.rawValue): \(s.candidates) random candidates (\(s.gatherRepeats) repetitions)")
            var gStream: [Double] = [], gFused: [Double] = [], gNoPrefetch: [Double] = [], gNaive: [Double] = []
            var gL1: [Double] = [], gFloatI8: [Double] = []
            let gatherBytes = rowBytes * s.candidates
            for rep in 0..<s.gatherRepeats {
                let user = users[rep % users.count]
                let rows = sets[rep]
                // A contiguous stretch of the vectors tensor (plus scales for I8 is as many bytes).
                let vectorOnly = index.count * index.taskCount * index.d * dtype.bytesPerValue
                let offset = Int(rng.next() % UInt64(max(1, vectorOnly - gatherBytes - 64))) & ~63
                gStream.append(time { checksum &+= KernelBaselines.streamRead(index.vectors + offset, bytes: gatherBytes) })
                gFused.append(time { _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: rows, k: s.k) })
                // Each variant reads another candidate set, so none finds the rows the last one cached.
                let other = sets[(rep + s.gatherRepeats / 2) % sets.count]
                gNoPrefetch.append(time {
                    _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: other, k: s.k, tuning: KernelTuning(prefetch: 0))
                })
                let fourth = sets[(rep + s.gatherRepeats / 4) % sets.count]
                if dtype == .f32 {
                    gL1.append(time {
                        _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: fourth, k: s.k,
                                               tuning: KernelTuning(rowPrefetch: .l2Pairs))
                    })
                } else if dtype == .i8 {
                    gFloatI8.append(time {
                        _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: user, rows: fourth, k: s.k,
                                               tuning: KernelTuning(i8Integer: false))
                    })
                }
                if s.naive && rep % 10 == 0 {
                    let third = sets[(rep + s.gatherRepeats / 3) % sets.count]
                    gNaive.append(time { _ = naiveRank(index: index, chain: chain, fusion: fusion, user: user, rows: third, k: s.k) })
                }
            }
            let gb = Double(gatherBytes)
            let fusedName = "fused gather+score+fusion+top-\(s.k), prefetch \(ItemIndex.defaultPrefetch), 1 thread"
            figures.append(figure("gather", dtype, "stream read of as many bytes (baseline)", gStream, bytes: gb))
            figures.append(figure("gather", dtype, fusedName, gFused, bytes: gb,
                                  baseline: "stream read of as many bytes (baseline)", baseP50: median(gStream),
                                  note: dtype == .i8 ? "integer dots" : nil))
            if !gL1.isEmpty {
                figures.append(figure("gather", dtype, "same, rows prefetched to L2 once per 128 B (prefetcht1)", gL1, bytes: gb,
                                      baseline: fusedName, baseP50: median(gFused)))
            }
            if !gFloatI8.isEmpty {
                figures.append(figure("gather", dtype, "same, int8 widened to F32 (previous kernel)", gFloatI8, bytes: gb,
                                      baseline: fusedName, baseP50: median(gFused)))
            }
            figures.append(figure("gather", dtype, "same, no prefetch", gNoPrefetch, bytes: gb,
                                  baseline: fusedName, baseP50: median(gFused)))
            if !gNaive.isEmpty {
                figures.append(figure("gather", dtype, "naive scalar loop", gNaive, bytes: gb, baseline: fusedName, baseP50: median(gFused)))
            }
            // The same index read in place from the file mapping (what tools do; the server
            // copies it into huge pages), measured in the same run.
            if s.residency == .hugePages, index.residency == .hugePages,
               let mapped = try? ItemIndex(path: index.path, model: world.model, populate: true, residency: .mapped) {
                var times: [Double] = []
                for rep in 0..<s.gatherRepeats {
                    let rows = sets[(rep + s.gatherRepeats / 6) % sets.count]
                    times.append(time {
                        _ = ScoringEngine.rank(index: mapped, chain: chain, fusion: fusion, user: users[rep % users.count], rows: rows, k: s.k)
                    })
                }
                figures.append(figure("gather", dtype, "same, index read in place from the file mapping (not huge pages)", times, bytes: gb,
                                      baseline: fusedName, baseP50: median(gFused)))
            }
            // Prefetch distance sweep (rows ahead), each on its own candidate sets.
            for distance in s.prefetchSweep {
                var times: [Double] = []
                for rep in 0..<s.gatherRepeats {
                    let rows = sets[(rep + s.gatherRepeats / 5 + distance) % sets.count]
                    times.append(time {
                        _ = ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: users[rep % users.count], rows: rows,
                                               k: s.k, tuning: KernelTuning(prefetch: distance))
                    })
                }
                figures.append(figure("gather", dtype, "same, prefetch \(distance) rows ahead", times, bytes: gb,
                                      baseline: fusedName, baseP50: median(gFused)))
            }
            gatherP50[dtype] = median(gFused)
            topGather[dtype] = (0..<users.count).map { i in
                ScoringEngine.rank(index: index, chain: chain, fusion: fusion, user: users[i], rows: sets[i % sets.count], k: s.k).top.sorted().map(\.id)
            }

            }
            // A whole request through the engine, stage by stage.
            if s.scenarios.contains("request") {
            log("bench \(dtype.rawValue): requests of \(s.candidates) candidates")
            figures += requestStages(world: world, bundle: bundle, sets: sets, settings: s, dtype: dtype, using: &rng)
            if let rescored = world.rescoreBundles[dtype] {
                log("bench \(dtype.rawValue) + rescore: requests of \(s.candidates) candidates")
                figures += requestStages(world: world, bundle: rescored, sets: sets, settings: s, dtype: dtype,
                                         label: "\(dtype.rawValue)+rescore", using: &rng)
                if let f32 = world.bundles[.f32] {
                    figures += rescoreAgreement(world: world, f32: f32, rescored: rescored, sets: sets, settings: s, dtype: dtype)
                }
            }
            }
            if checksum == 42 { log("") }  // keeps the reads
        }

        // dtype comparisons and recall against F32.
        for dtype in s.dtypes where dtype != .f32 {
            if let f = wholeP50[.f32], let x = wholeP50[dtype] {
                figures.append(BenchFigure(scenario: "whole", dtype: dtype.rawValue, name: "speed-up vs F32 (p50 ratio)", p50Ms: 0, minMs: 0,
                                           baseline: "f32 fused, 1 thread", ratio: x / f, value: f / x))
            }
            if let f = gatherP50[.f32], let x = gatherP50[dtype] {
                figures.append(BenchFigure(scenario: "gather", dtype: dtype.rawValue, name: "speed-up vs F32 (p50 ratio)", p50Ms: 0, minMs: 0,
                                           baseline: "f32 fused gather", ratio: x / f, value: f / x))
            }
            if let a = topWhole[.f32], let b = topWhole[dtype] {
                figures.append(BenchFigure(scenario: "whole", dtype: dtype.rawValue, name: "recall@\(s.k) vs F32", p50Ms: 0, minMs: 0,
                                           value: recall(a, b), note: "\(users.count) users"))
            }
            if let a = topGather[.f32], let b = topGather[dtype] {
                figures.append(BenchFigure(scenario: "gather", dtype: dtype.rawValue, name: "recall@\(s.k) vs F32", p50Ms: 0, minMs: 0,
                                           value: recall(a, b), note: "\(users.count) users"))
            }
        }
        return BenchReport(items: s.items, tasks: s.tasks, d: s.d, candidates: s.candidates, k: s.k,
                           cores: ScoringOptions.cores, figures: figures)
    }
}
