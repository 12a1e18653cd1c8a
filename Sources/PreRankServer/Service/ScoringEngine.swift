#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Catalog
import Dispatch
import Fusion
import StrictJSON
import TwinTower

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
        guard request.candidates != nil || options.allowWholeIndex else {
            throw APIError.badField("candidates", "candidates is required: this server does not score the whole index (config topk.allow_whole_index is false)")
        }
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

        // Resolve candidate ids to index rows (unknown ids are listed, duplicates scored once):
        // base rows, and rows of the live catalog's delta (`ItemDelta`: upserts override the
        // base, deletes hide it).
        let index = bundle.index
        let delta = bundle.delta
        var rows: [Int32] = []
        var relevance: [Float] = []
        var deltaRows: [Int32] = []
        var deltaRelevance: [Float] = []
        var unknown: [Int64] = []
        let candidateCount: Int
        let full = request.candidates == nil
        if let candidates = request.candidates {
            candidateCount = candidates.count
            rows = resolve(candidates, index: index, delta: delta, relevance: request.relevance, into: &relevance,
                           deltaRows: &deltaRows, deltaRelevance: &deltaRelevance, unknown: &unknown)
        } else {
            candidateCount = delta.itemCount(base: index)
        }
        t0 = DispatchTime.now().uptimeNanoseconds
        stages.resolve = t0 - t1

        // Quantised indexes with rescore rows: scan for the best `depth`, rescore those exactly.
        let rescoring = index.rescore != nil
        let depth = rescoring ? max(k, options.rescoreDepth ?? max(4 * k, 256)) : k
        let threads = (full ? index.count : rows.count) >= options.parallelThreshold ? max(1, options.parallelism) : 1
        let slotKind: SlotKind = rescoring ? .position : .row
        // The delta first: it is small, and under a budget the newest items should not be the
        // ones a partial answer leaves out. Its slots are tagged negative (`DeltaSlot`) so both
        // scans share one top-K, whose order (score, then id) makes the merge exact.
        var top = TopK(k: depth)
        var scored = 0
        var partial = false
        if let deltaIndex = delta.index, full || !deltaRows.isEmpty {
            let part = rank(index: deltaIndex, chain: bundle.chain, fusion: fusion, user: user, rows: full ? nil : deltaRows,
                            relevance: deltaRelevance, k: depth, deadline: deadline, slots: slotKind,
                            hidden: full && delta.staleCount > 0 ? delta.stale.words : nil)
            DeltaSlot.merge(part.top, into: &top)
            (scored, partial) = (part.scored, part.partial)
        }
        if full || !rows.isEmpty {
            let scan = rank(index: index, chain: bundle.chain, fusion: fusion, user: user, rows: full ? nil : rows,
                            relevance: relevance, k: depth, threads: threads, deadline: deadline, slots: slotKind,
                            hidden: full && delta.hiddenCount > 0 ? delta.hidden.words : nil)
            top.merge(scan.top)
            scored += scan.scored
            partial = partial || scan.partial
        }
        t1 = DispatchTime.now().uptimeNanoseconds
        stages.score = t1 - t0
        var rescored = 0
        if rescoring {
            // Exact: the same fused F32 kernel as an F32 index, on the F32 rows of the kept set.
            let kept = top.sorted()
            let keptBase = kept.filter { !DeltaSlot.isDelta($0.slot) }
            let keptDelta = kept.filter { DeltaSlot.isDelta($0.slot) }.map { DeltaSlot.untag($0.slot) }
            let keptRows = keptBase.map { full ? $0.slot : rows[Int($0.slot)] }
            let keptRelevance = relevance.isEmpty ? [] : keptBase.map { relevance[Int($0.slot)] }
            top = rank(index: index, chain: bundle.chain, fusion: fusion, user: user, rows: keptRows,
                       relevance: keptRelevance, k: k, source: .rescore).top
            if let deltaIndex = delta.index, !keptDelta.isEmpty {
                let dRows = keptDelta.map { full ? $0 : deltaRows[Int($0)] }
                let dRelevance = deltaRelevance.isEmpty ? [] : keptDelta.map { deltaRelevance[Int($0)] }
                DeltaSlot.merge(rank(index: deltaIndex, chain: bundle.chain, fusion: fusion, user: user, rows: dRows,
                                     relevance: dRelevance, k: k, source: .rescore).top, into: &top)
            }
            rescored = keptRows.count + keptDelta.count
            t0 = DispatchTime.now().uptimeNanoseconds
            stages.rescore = t0 - t1
            t1 = t0
        }

        // Per-task probabilities of the kept items (recomputed: k ≪ n, cheaper than keeping all).
        let ranked = top.sorted()
        let t = index.taskCount
        var items: [RankedItem] = []
        items.reserveCapacity(ranked.count)
        var probs = [Float](repeating: 0, count: ranked.count * t)
        let source: ItemIndex.VectorSource = rescoring ? .rescore : .primary
        let basePositions = ranked.indices.filter { !DeltaSlot.isDelta(ranked[$0].slot) }
        let deltaPositions = ranked.indices.filter { DeltaSlot.isDelta(ranked[$0].slot) }
        for (table, positions) in [(index, basePositions), (delta.index, deltaPositions)] where !positions.isEmpty {
            guard let table else { continue }
            let slots = positions.map { DeltaSlot.untag(ranked[$0].slot) }
            var part = [Float](repeating: 0, count: slots.count * t)
            user.withUnsafeBufferPointer { u in
                part.withUnsafeMutableBufferPointer { p in
                    table.probabilities(user: u.baseAddress!, rows: slots, count: slots.count, chain: bundle.chain,
                                        source: source, into: p.baseAddress!)
                }
            }
            for (j, position) in positions.enumerated() {
                for task in 0..<t { probs[position * t + task] = part[j * t + task] }
            }
        }
        for (i, r) in ranked.enumerated() {
            items.append(RankedItem(id: r.id, score: r.score, probabilities: Array(probs[(i * t)..<((i + 1) * t)])))
        }
        stages.topK = DispatchTime.now().uptimeNanoseconds - t1
        return ScoringResult(items: items, unknownIDs: unknown, partial: partial, scoredCount: scored,
                             candidateCount: candidateCount, rescored: rescored, fusion: fusion, stages: stages)
    }

    /// Index rows of `candidates` in request order, each distinct row once; unknown ids go to
    /// `unknown` and the relevance of each kept candidate to `relevanceOut`. With a non-empty
    /// `delta`, ids it upserted go to `deltaRows` (rows of `delta.index`) and ids it deleted or
    /// overrode are not base rows (`ItemDelta.refine`).
    ///
    /// The ids are looked up in one batch (`IDTable.rows(of:into:)`, slots prefetched ahead);
    /// duplicates are found with a bitmap over index rows (N/8 bytes, one L2-resident bit test
    /// per candidate) instead of a Set (hashing and growth, ~40 ns per candidate).
    static func resolve(_ candidates: [Int64], index: ItemIndex, delta: ItemDelta = ItemDelta(), relevance: [Double]?,
                        into relevanceOut: inout [Float], deltaRows: inout [Int32], deltaRelevance: inout [Float],
                        unknown: inout [Int64]) -> [Int32] {
        let n = candidates.count
        guard n > 0 else { return [] }
        var looked = [Int32](unsafeUninitializedCapacity: n) { buffer, count in
            candidates.withUnsafeBufferPointer { index.table.rows(of: $0, into: buffer.baseAddress!) }
            count = n
        }
        if relevance != nil { relevanceOut.reserveCapacity(n) }
        let words = RowBitmap.wordCount(rows: index.count)
        let deltaWords = RowBitmap.wordCount(rows: delta.index?.count ?? 0)
        let plain = delta.isEmpty
        var kept = 0
        var unknownSeen = Set<Int64>()
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words + deltaWords) { seen in
            seen.initialize(repeating: 0)
            looked.withUnsafeMutableBufferPointer { rows in
                for i in 0..<n {
                    var r = rows[i]
                    if !plain {
                        switch delta.refine(candidates[i], baseRow: r) {
                        case .base(let b): r = b
                        case .unknown: r = -1
                        case .delta(let dr):
                            // Delta rows' marks follow the base rows' words.
                            guard RowBitmap.insert(seen.baseAddress! + words, Int(dr)) else { continue }
                            deltaRows.append(dr)
                            if let relevance { deltaRelevance.append(Float(relevance[i])) }
                            continue
                        }
                    }
                    if r < 0 {
                        // Listed once each, in request order, like duplicates of known ids.
                        if unknownSeen.insert(candidates[i]).inserted { unknown.append(candidates[i]) }
                        continue
                    }
                    guard RowBitmap.insert(seen.baseAddress!, Int(r)) else { continue }
                    rows[kept] = r  // compacted in place: kept ≤ i
                    kept += 1
                    if let relevance { relevanceOut.append(Float(relevance[i])) }
                }
            }
        }
        looked.removeLast(n - kept)
        return looked
    }

    /// `resolve` without a delta (tests and benchmarks of the base path).
    static func resolve(_ candidates: [Int64], index: ItemIndex, relevance: [Double]?, into relevanceOut: inout [Float],
                        unknown: inout [Int64]) -> [Int32] {
        var deltaRows: [Int32] = [], deltaRelevance: [Float] = []
        return resolve(candidates, index: index, relevance: relevance, into: &relevanceOut, deltaRows: &deltaRows,
                       deltaRelevance: &deltaRelevance, unknown: &unknown)
    }

    /// The scan behind `score`: fused scoring of candidate `rows` (or the whole index when nil)
    /// into a top-`k`, split over `threads` contiguous parts (each with its own top-K, merged;
    /// the order is total, so the result equals the single-thread one exactly).
    ///
    /// - parameters:
    ///   - user: `[T × d]` user-query tower output.
    ///   - rows: distinct valid index rows; nil scans every row.
    ///   - relevance: one level per row, or empty.
    ///   - slots: what `Ranked.slot` holds: the index row, or the candidate's position in `rows`
    ///     (for a rescore pass that needs the candidate's relevance back).
    ///   - source: the index's own vectors or its F32 rescore rows.
    ///   - hidden: for a whole-index scan, a bitmap of rows not to return (rows the live
    ///     catalog deleted or overrode); they are scored with their block and skipped at the
    ///     top-K, which stays exact because only returned candidates set its threshold.
    public static func rank(index: ItemIndex, chain: LogitChain, fusion: FusionPolicy, user: [Float], rows: [Int32]?,
                            relevance: [Float] = [], k: Int, threads: Int = 1, deadline: UInt64? = nil,
                            tuning: KernelTuning = KernelTuning(), slots: SlotKind = .row,
                            source: ItemIndex.VectorSource = .primary, hidden: [UInt64]? = nil) -> (top: TopK, scored: Int, partial: Bool) {
        precondition(relevance.isEmpty || relevance.count == rows?.count, "relevance needs one level per row")
        let total = rows?.count ?? index.count
        let threads = max(1, min(threads, total / 1024))
        var top = TopK(k: k)
        var scored = 0
        var partial = false
        user.withUnsafeBufferPointer { u in
            (rows ?? []).withUnsafeBufferPointer { rowBuffer in
                relevance.withUnsafeBufferPointer { rel in
                  (hidden ?? []).withUnsafeBufferPointer { hiddenBuffer in
                    let work = ScanWork(index: index, chain: chain, fusion: fusion, user: u, rows: rowBuffer,
                                        relevance: rel, fullScan: rows == nil, deadline: deadline, k: k,
                                        tuning: tuning, slotIsPosition: slots == .position, source: source,
                                        hidden: rows == nil && hidden != nil ? hiddenBuffer.baseAddress : nil)
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
        }
        return (top, scored, partial)
    }

    /// What `Ranked.slot` holds in a `rank` result.
    public enum SlotKind: Sendable { case row, position }

    /// Config fusion, with the request's overrides when config allows them.
    static func resolveFusion(_ override: FusionOverride?, options: ScoringOptions) throws(APIError) -> FusionPolicy {
        var fusion = options.fusion
        if let o = override, o.alpha != nil || o.beta != nil || o.gamma != nil, !options.allowFusionOverride {
            // Ignoring the weights would answer with other scores than the caller asked for.
            throw APIError(status: 400, code: "fusion_override_not_allowed",
                           message: "this server does not take fusion weights from requests (config fusion.allow_request_override is false); omit fusion",
                           field: "fusion")
        }
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
