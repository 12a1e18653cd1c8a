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

/// The request-stage, rescore and baseline measurements `run` calls, one function per figure
/// family, kept apart from the run's sequencing.
extension ScoringBenchmark {
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
}
