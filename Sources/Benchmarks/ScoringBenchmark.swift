#if canImport(Glibc)
import Catalog
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Fusion
import PreRankServer
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
public struct BenchSettings: Sendable {
    public var items = 1_000_000
    public var tasks = 3
    public var d = 64
    public var candidates = 10_000
    public var k = 100
    public var dtypes: [IndexDType] = [.f32, .f16, .i8]
    /// Repetitions of whole-index figures (each reads the whole index).
    public var repeats = 15
    /// Repetitions of the gathered-candidate and request figures.
    public var gatherRepeats = 200
    /// Where the synthetic model and indexes are written (reused when present).
    public var directory = "/tmp/prerank-bench"
    /// Threads for the parallel whole-index figure.
    public var threads = ScoringOptions.cores
    /// Run the naive scalar baseline (slow: tens of ns per value).
    public var naive = true
    public var seed: UInt64 = 7
    /// Which of `whole`, `gather`, `request` to run (recall needs whole / gather).
    public var scenarios: Set<String> = ["whole", "gather", "request"]
    /// How the indexes are held: huge pages as the server does, or the plain mapping.
    public var residency: ItemIndex.Residency = .hugePages
    /// Extra gather figures at these prefetch distances (rows ahead).
    public var prefetchSweep: [Int] = []
    public init() {}
}

/// One measured figure.
public struct BenchFigure: Codable, Sendable {
    public var scenario: String
    public var dtype: String
    public var name: String
    /// Median and best of the repetitions, milliseconds (0 for pure values such as recall).
    public var p50Ms: Double
    public var minMs: Double
    /// The figure this one is compared with (same scenario and dtype, same run).
    public var baseline: String?
    /// `p50Ms / baseline.p50Ms` (< 1: faster than the baseline).
    public var ratio: Double?
    /// Bytes read per second at the median, GB/s.
    public var gbPerS: Double?
    /// A value that is not a time (recall).
    public var value: Double?
    public var note: String?
}

public struct BenchReport: Codable, Sendable {
    public var items: Int
    public var tasks: Int
    public var d: Int
    public var candidates: Int
    public var k: Int
    public var cores: Int
    /// The scoring kernel that ran: "avx2" or "scalar" (`ItemIndex.kernelISA`).
    public var kernel: String = ItemIndex.kernelISA
    public var figures: [BenchFigure]
}

public enum ScoringBenchmark {
    /// Runs every scenario; `log` receives progress lines.
    public static func run(_ s: BenchSettings, log: (String) -> Void) throws(FormatError) -> BenchReport {
        let world = try BenchWorld.prepare(s, log: log)
        var figures: [BenchFigure] = []
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

    // MARK: - Scenarios

    static func requestStages(world: BenchWorld, bundle: ServingBundle, sets: [[Int32]], settings s: BenchSettings,
                              dtype: IndexDType, label: String? = nil, using rng: inout SplitMix64) -> [BenchFigure] {
        var parse: [Double] = [], parseBaseline: [Double] = [], tower: [Double] = [], resolve: [Double] = [], score: [Double] = []
        var rescore: [Double] = [], topK: [Double] = [], encode: [Double] = [], total: [Double] = [], overhead: [Double] = []
        let options = ScoringOptions(defaultK: s.k, maxK: max(s.k, 1000), maxCandidates: max(100_000, s.candidates), parallelism: 1)
        let reps = max(1, s.gatherRepeats / 2)
        let tag = label ?? dtype.rawValue
        for rep in 0..<reps {
            let ids = sets[rep % sets.count].map { bundle.index.ids[Int($0)] }
            var request = world.randomRequest(using: &rng)
            request.candidates = ids
            let body = BenchBody.json(request)
            let bytes = Array(body)
            var decoded: PreRankRequest?
            parse.append(time { decoded = try? RequestDecoder.decode(bytes) })
            precondition(decoded?.candidates?.count == ids.count)
            if label == nil {
                var baseline: BenchBody?
                parseBaseline.append(time { baseline = try? JSONDecoder().decode(BenchBody.self, from: body) })
                precondition(baseline?.candidates.count == ids.count)
            }
            var result: ScoringResult?
            let ms = time { result = try? ScoringEngine.score(request, bundle: bundle, options: options) }
            total.append(ms)
            guard let result else { continue }
            tower.append(Double(result.stages.userTower) / 1e6)
            resolve.append(Double(result.stages.resolve) / 1e6)
            score.append(Double(result.stages.score) / 1e6)
            rescore.append(Double(result.stages.rescore) / 1e6)
            topK.append(Double(result.stages.topK) / 1e6)
            overhead.append(ms - Double(result.stages.total) / 1e6)
            var out: [UInt8] = []
            let names = bundle.model.taskNames
            encode.append(time {
                let response = PreRankResponse(requestID: request.requestID, modelVersion: bundle.version, partial: result.partial,
                                               tookMs: 1, items: result.items.map { ScoredItem($0, taskNames: nil) },
                                               unknownIDs: result.unknownIDs)
                out = ResponseEncoder.encode(response)
            })
            precondition(!out.isEmpty && names.count > 0)
        }
        let note = "RequestDecoder (strict streaming decoder); baseline: Foundation JSONDecoder"
        var figures = [figure("request", tag, "parse body (\(s.candidates) ids)", parse, note: label == nil ? note : nil)]
        if !parseBaseline.isEmpty { figures.append(figure("request", tag, "parse body with JSONDecoder (baseline)", parseBaseline)) }
        figures += [
            figure("request", tag, "user tower", tower),
            figure("request", tag, "resolve ids to rows (batched table lookup + dedup)", resolve),
            figure("request", tag, "score (fused kernel + fusion + top-K filter)", score),
        ]
        if bundle.index.rescore != nil {
            figures.append(figure("request", tag, "rescore the best \(max(s.k, max(4 * s.k, 256))) from F32 rows", rescore))
        }
        figures += [
            figure("request", tag, "top-K sort + probabilities of kept", topK),
            figure("request", tag, "encode response (k = \(s.k))", encode, note: "ResponseEncoder"),
            figure("request", tag, "ScoringEngine.score total", total),
            figure("request", tag, "score total minus the sum of its stages (unaccounted)", overhead),
        ]
        return figures
    }

    /// The answers of a quantised index with rescore rows against the F32 index on the same
    /// requests: recall@k, largest probability difference of the items both return, and the
    /// request-total speed-up (medians of interleaved runs).
    static func rescoreAgreement(world: BenchWorld, f32: ServingBundle, rescored: ServingBundle, sets: [[Int32]],
                                 settings s: BenchSettings, dtype: IndexDType) -> [BenchFigure] {
        let options = ScoringOptions(defaultK: s.k, maxK: max(s.k, 1000), maxCandidates: max(100_000, s.candidates), parallelism: 1)
        var rng = SplitMix64(seed: s.seed &+ 77)
        var a: [[Int64]] = [], b: [[Int64]] = []
        var maxDelta: Float = 0
        var tF: [Double] = [], tQ: [Double] = []
        for rep in 0..<max(16, s.gatherRepeats / 4) {
            var request = world.randomRequest(using: &rng)
            request.candidates = sets[rep % sets.count].map { f32.index.ids[Int($0)] }
            var x: ScoringResult?, y: ScoringResult?
            if rep % 2 == 0 {
                tF.append(time { x = try? ScoringEngine.score(request, bundle: f32, options: options) })
                tQ.append(time { y = try? ScoringEngine.score(request, bundle: rescored, options: options) })
            } else {
                tQ.append(time { y = try? ScoringEngine.score(request, bundle: rescored, options: options) })
                tF.append(time { x = try? ScoringEngine.score(request, bundle: f32, options: options) })
            }
            guard let x, let y else { continue }
            a.append(x.items.map(\.id))
            b.append(y.items.map(\.id))
            let byID = Dictionary(uniqueKeysWithValues: x.items.map { ($0.id, $0.probabilities) })
            for item in y.items {
                guard let p = byID[item.id] else { continue }
                for (u, v) in zip(p, item.probabilities) { maxDelta = max(maxDelta, abs(u - v)) }
            }
        }
        let tag = "\(dtype.rawValue)+rescore"
        return [
            BenchFigure(scenario: "request", dtype: tag, name: "recall@\(s.k) vs F32 index (same requests)", p50Ms: 0, minMs: 0,
                        value: recall(a, b), note: "\(a.count) requests"),
            BenchFigure(scenario: "request", dtype: tag, name: "max |Δp| of items both return", p50Ms: 0, minMs: 0, value: Double(maxDelta)),
            BenchFigure(scenario: "request", dtype: tag, name: "ScoringEngine.score total vs F32 (p50 ratio, interleaved)", p50Ms: median(tQ),
                        minMs: tQ.min() ?? 0, baseline: "f32 ScoringEngine.score total", ratio: median(tQ) / max(median(tF), 1e-9),
                        value: median(tF) / max(median(tQ), 1e-9)),
        ]
    }

    /// The naive loop: scalar dots (plain C, no SIMD), libm sigmoid, Swift fusion, a push of
    /// every candidate into the top-K.
    static func naiveRank(index: ItemIndex, chain: LogitChain, fusion: FusionPolicy, user: [Float], rows: [Int32]?, k: Int) -> TopK {
        var top = TopK(k: k)
        let t = index.taskCount
        let n = rows?.count ?? index.count
        let block = 1024
        var probs = [Float](repeating: 0, count: block * t)
        user.withUnsafeBufferPointer { u in
            probs.withUnsafeMutableBufferPointer { p in
                var start = 0
                while start < n {
                    let m = min(block, n - start)
                    if let rows {
                        rows.withUnsafeBufferPointer { r in
                            index.scalarProbabilitiesC(user: u.baseAddress!, rows: r.baseAddress! + start, start: 0, count: m,
                                                       chain: chain, into: p.baseAddress!)
                        }
                    } else {
                        index.scalarProbabilitiesC(user: u.baseAddress!, rows: nil, start: start, count: m, chain: chain, into: p.baseAddress!)
                    }
                    for i in 0..<m {
                        let row = rows?[start + i] ?? Int32(start + i)
                        top.push(Ranked(score: fusion.score(ctr: p[i * t], ctcvr: p[i * t + t - 1]), id: index.ids[Int(row)], slot: row))
                    }
                    start += m
                }
            }
        }
        return top
    }

    static func streamAll(_ index: ItemIndex) -> UInt64 {
        let n = index.count * index.taskCount * index.d
        let vectorBytes = n * index.dtype.bytesPerValue
        var sum = KernelBaselines.streamRead(index.vectors, bytes: vectorBytes)
        if let scales = index.scales {
            sum &+= KernelBaselines.streamRead(UnsafeRawPointer(scales), bytes: index.vectorBytes - vectorBytes)
        }
        return sum
    }

    /// Mean over users of |top_a ∩ top_b| / |top_a|.
    public static func recall(_ a: [[Int64]], _ b: [[Int64]]) -> Double {
        var total = 0.0
        for (x, y) in zip(a, b) {
            let s = Set(y)
            total += Double(x.filter { s.contains($0) }.count) / Double(max(1, x.count))
        }
        return total / Double(max(1, min(a.count, b.count)))
    }

    // MARK: - Helpers

    @inline(__always)
    static func time(_ body: () -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func figure(_ scenario: String, _ dtype: IndexDType, _ name: String, _ times: [Double], bytes: Double? = nil,
                       baseline: String? = nil, baseP50: Double? = nil, note: String? = nil) -> BenchFigure {
        figure(scenario, dtype.rawValue, name, times, bytes: bytes, baseline: baseline, baseP50: baseP50, note: note)
    }

    static func figure(_ scenario: String, _ dtype: String, _ name: String, _ times: [Double], bytes: Double? = nil,
                       baseline: String? = nil, baseP50: Double? = nil, note: String? = nil) -> BenchFigure {
        let p50 = median(times)
        return BenchFigure(scenario: scenario, dtype: dtype, name: name, p50Ms: p50, minMs: times.min() ?? 0,
                           baseline: baseline, ratio: baseP50.map { $0 > 0 ? p50 / $0 : 0 },
                           gbPerS: bytes.map { p50 > 0 ? $0 / (p50 * 1e6) : 0 }, value: nil, note: note)
    }
}
