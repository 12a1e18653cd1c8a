import Dispatch
import Fusion
import TwinTower

/// Limits and defaults the engine applies to every request (from config §5).
public struct ScoringOptions: Sendable, Equatable {
    public var defaultK: Int
    public var maxK: Int
    public var maxCandidates: Int
    public var fusion: FusionPolicy
    public var allowFusionOverride: Bool
    /// Requests with at least this many candidates are split across `parallelism` threads.
    public var parallelThreshold: Int
    public var parallelism: Int

    public init(defaultK: Int = 100, maxK: Int = 1000, maxCandidates: Int = 100_000,
                fusion: FusionPolicy = FusionPolicy(), allowFusionOverride: Bool = false,
                parallelThreshold: Int = 50_000, parallelism: Int = 1) {
        self.defaultK = defaultK
        self.maxK = maxK
        self.maxCandidates = maxCandidates
        self.fusion = fusion
        self.allowFusionOverride = allowFusionOverride
        self.parallelThreshold = parallelThreshold
        self.parallelism = parallelism
    }
}

/// One returned item.
public struct RankedItem: Sendable, Equatable {
    public var id: Int64
    public var score: Double
    /// Per-task probabilities in task order; `first` is CTR, `last` is CTCVR.
    public var probabilities: [Float]
}

/// Time spent in each stage of a request, in nanoseconds (exported as metrics).
public struct StageTimes: Sendable, Equatable {
    public var userTower: UInt64 = 0
    public var score: UInt64 = 0
    public var topK: UInt64 = 0
    public init() {}
}

/// The outcome of scoring one request, before JSON encoding.
public struct ScoringResult: Sendable, Equatable {
    public var items: [RankedItem]
    public var unknownIDs: [Int64]
    /// True when the budget ran out while scoring: `items` are the best of what was scored.
    public var partial: Bool
    public var scoredCount: Int
    public var candidateCount: Int
    public var fusion: FusionPolicy
    public var stages: StageTimes
}

/// Scores a `/prerank` request against a serving bundle: user tower, gather + dot products +
/// logit chain per candidate block, fusion, top-K. The one path behind `prerank score` and
/// `POST /prerank`.
public enum ScoringEngine {
    /// Candidates are scored this many at a time; the deadline is checked between blocks.
    public static let blockSize = 1024

    /// - parameters:
    ///   - deadline: monotonic time (`DispatchTime.now().uptimeNanoseconds` scale) after which
    ///     no more blocks are scored; `nil` for no budget.
    /// - throws: `APIError` 400 for bad fields, 504 when the budget expired before scoring began.
    public static func score(_ request: PreRankRequest, bundle: ServingBundle, options: ScoringOptions,
                             deadline: UInt64? = nil) throws(APIError) -> ScoringResult {
        let fusion = try resolveFusion(request.fusion, options: options)
        let k = min(request.k ?? options.defaultK, options.maxK)
        guard k >= 1 else { throw APIError.badField("k", "k must be at least 1") }
        if let c = request.candidates, c.count > options.maxCandidates {
            throw APIError.badField("candidates", "\(c.count) candidates is more than the limit of \(options.maxCandidates)")
        }
        if let r = request.relevance {
            guard let c = request.candidates else {
                throw APIError.badField("relevance", "relevance needs candidates of the same length")
            }
            guard r.count == c.count else {
                throw APIError.badField("relevance", "relevance has \(r.count) values for \(c.count) candidates")
            }
            for (i, v) in r.enumerated() where !(v.isFinite && v >= 0 && v <= 3) {
                throw APIError.badField("relevance[\(i)]", "a relevance level must be a number from 0 to 3")
            }
        }

        // User-query tower.
        var stages = StageTimes()
        var t0 = DispatchTime.now().uptimeNanoseconds
        let row = try userRow(request, bundle: bundle)
        let user: [Float]
        do {
            user = bundle.userTower.embed(try bundle.userEncoder.encode(row))
        } catch {
            throw APIError.badField(error.field, error.message)
        }
        var t1 = DispatchTime.now().uptimeNanoseconds
        stages.userTower = t1 - t0
        if let deadline, t1 > deadline {
            throw APIError(status: 504, code: "budget_expired", message: "the time budget expired before scoring began")
        }

        // Resolve candidate ids to index rows (unknown ids are listed, duplicates scored once).
        let index = bundle.index
        var rows: [Int32] = []
        var relevance: [Float] = []
        var unknown: [Int64] = []
        let candidateCount: Int
        if let candidates = request.candidates {
            candidateCount = candidates.count
            rows.reserveCapacity(candidates.count)
            if request.relevance != nil { relevance.reserveCapacity(candidates.count) }
            var seen = Set<Int32>(minimumCapacity: candidates.count)
            for (i, id) in candidates.enumerated() {
                let r = index.row(of: id)
                if r < 0 { unknown.append(id); continue }
                guard seen.insert(r).inserted else { continue }
                rows.append(r)
                if let rel = request.relevance { relevance.append(Float(rel[i])) }
            }
        } else {
            candidateCount = index.count
        }

        t0 = DispatchTime.now().uptimeNanoseconds
        let total = request.candidates == nil ? index.count : rows.count
        let threads = total >= options.parallelThreshold ? max(1, options.parallelism) : 1
        var partial = false
        var scored = 0
        var top = TopK(k: k)
        user.withUnsafeBufferPointer { u in
            rows.withUnsafeBufferPointer { rowBuffer in
                relevance.withUnsafeBufferPointer { rel in
                    let work = ScanWork(index: index, chain: bundle.chain, fusion: fusion, user: u, rows: rowBuffer,
                                        relevance: rel, fullScan: request.candidates == nil, deadline: deadline, k: k)
                    if threads == 1 {
                        let part = work.scan(0..<total)
                        (top, scored, partial) = (part.top, part.scored, part.partial)
                    } else {
                        let parts = Parts(count: threads)
                        let chunk = (total + threads - 1) / threads
                        DispatchQueue.concurrentPerform(iterations: threads) { p in
                            let range = min(total, p * chunk)..<min(total, (p + 1) * chunk)
                            parts.set(p, work.scan(range))
                        }
                        for part in parts.values {
                            top.merge(part.top)
                            scored += part.scored
                            partial = partial || part.partial
                        }
                    }
                }
            }
        }
        t1 = DispatchTime.now().uptimeNanoseconds
        stages.score = t1 - t0

        // Per-task probabilities of the kept items (recomputed: k ≪ n, cheaper than keeping all).
        let ranked = top.sorted()
        let t = index.taskCount
        var items: [RankedItem] = []
        items.reserveCapacity(ranked.count)
        var probs = [Float](repeating: 0, count: t)
        user.withUnsafeBufferPointer { u in
            for r in ranked {
                var slot = r.slot
                probs.withUnsafeMutableBufferPointer { p in
                    index.probabilities(user: u.baseAddress!, rows: &slot, count: 1, chain: bundle.chain, into: p.baseAddress!)
                }
                items.append(RankedItem(id: r.id, score: r.score, probabilities: probs))
            }
        }
        stages.topK = DispatchTime.now().uptimeNanoseconds - t1
        return ScoringResult(items: items, unknownIDs: unknown, partial: partial, scoredCount: scored,
                             candidateCount: candidateCount, fusion: fusion, stages: stages)
    }

    /// Config fusion, with the request's overrides when config allows them.
    static func resolveFusion(_ override: FusionOverride?, options: ScoringOptions) throws(APIError) -> FusionPolicy {
        var fusion = options.fusion
        if let o = override, options.allowFusionOverride {
            fusion.alpha = o.alpha ?? fusion.alpha
            fusion.beta = o.beta ?? fusion.beta
            fusion.gamma = o.gamma ?? fusion.gamma
        }
        do {
            return try fusion.validated()
        } catch {
            throw APIError.badField("fusion.\(error.field)", error.message)
        }
    }

    /// The user-query feature row: `user` and `query` maps merged, each value remembering
    /// where it came from. A known field given in both is ambiguous and refused.
    static func userRow(_ request: PreRankRequest, bundle: ServingBundle) throws(APIError) -> FeatureRow {
        var row = FeatureRow()
        for (name, value) in request.user where bundle.userFields.contains(name) {
            row.values[name] = value
            row.sources[name] = "user"
        }
        for (name, value) in request.query where bundle.userFields.contains(name) {
            if row.values[name] != nil {
                throw APIError.badField("query.\(name)", "\(name) is given in both user and query")
            }
            row.values[name] = value
            row.sources[name] = "query"
        }
        return row
    }
}

/// One scan over a range of candidates: blocks of probabilities, fusion, a private top-K.
private struct ScanWork: @unchecked Sendable {
    // Read-only views shared by the threads of one request, alive for the duration of `score`.
    let index: ItemIndex
    let chain: LogitChain
    let fusion: FusionPolicy
    let user: UnsafeBufferPointer<Float>
    let rows: UnsafeBufferPointer<Int32>
    let relevance: UnsafeBufferPointer<Float>
    let fullScan: Bool
    let deadline: UInt64?
    let k: Int

    func scan(_ range: Range<Int>) -> (top: TopK, scored: Int, partial: Bool) {
        var top = TopK(k: k)
        let t = index.taskCount
        let block = ScoringEngine.blockSize
        var probs = [Float](repeating: 0, count: block * t)
        var start = range.lowerBound
        var partial = false
        guard let u = user.baseAddress else { return (top, 0, false) }
        probs.withUnsafeMutableBufferPointer { pb in
            guard let p = pb.baseAddress else { return }
            while start < range.upperBound {
                if let deadline, DispatchTime.now().uptimeNanoseconds > deadline { partial = true; break }
                let n = min(block, range.upperBound - start)
                if fullScan {
                    index.probabilities(user: u, range: start..<(start + n), chain: chain, into: p)
                } else if let r = rows.baseAddress {
                    index.probabilities(user: u, rows: r + start, count: n, chain: chain, into: p)
                }
                for i in 0..<n {
                    let row = fullScan ? Int32(start + i) : rows[start + i]
                    let rel = relevance.isEmpty ? 0 : relevance[start + i]
                    let s = fusion.score(ctr: p[i * t], ctcvr: p[i * t + t - 1], relevance: rel)
                    top.push(Ranked(score: s, id: index.ids[Int(row)], slot: row))
                }
                start += n
            }
        }
        return (top, start - range.lowerBound, partial)
    }
}

/// Results of the parallel parts, each written by one thread into its own slot.
private final class Parts: @unchecked Sendable {
    // Each slot is written by exactly one concurrentPerform iteration and read after it returns;
    // the storage is allocated once, so no thread touches another's slot or the buffer header.
    private let slots: UnsafeMutableBufferPointer<(top: TopK, scored: Int, partial: Bool)>
    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: (TopK(k: 1), 0, false))
    }
    deinit {
        slots.deinitialize()
        slots.deallocate()
    }
    func set(_ i: Int, _ v: (top: TopK, scored: Int, partial: Bool)) { slots[i] = v }
    var values: [(top: TopK, scored: Int, partial: Bool)] { Array(slots) }
}
