import Catalog
import Dispatch
import Fusion
import TwinTower

struct ScanWork: @unchecked Sendable {
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
    let tuning: KernelTuning
    let slotIsPosition: Bool
    let source: ItemIndex.VectorSource
    /// Whole-index scans over a live catalog: rows not to return (`ItemDelta.hidden`).
    let hidden: UnsafePointer<UInt64>?

    func scan(_ range: Range<Int>) -> (top: TopK, scored: Int, partial: Bool) {
        var top = TopK(k: k)
        let block = ScoringEngine.blockSize
        var start = range.lowerBound
        var partial = false
        guard let u = user.baseAddress else { return (top, 0, false) }
        let fused = FusedScoring(formula: fusion.formula == .additive ? .additive : .multiplicative,
                                 alpha: fusion.alpha, beta: fusion.beta, gamma: fusion.gamma)
        let scratch = KernelScratch(taskCount: index.taskCount, capacity: block)
        var scanTuning = tuning
        if fullScan { scanTuning.prefetch = ItemIndex.scanPrefetch }
        let ids = index.ids.baseAddress!
        // The first call is short: until the heap holds k candidates the threshold is -inf and
        // every candidate comes back to be pushed; a short first call sets a real threshold sooner.
        var callSize = min(block, max(2 * k, 256))
        while start < range.upperBound {
            if let deadline, DispatchTime.now().uptimeNanoseconds > deadline { partial = true; break }
            let n = min(callSize, range.upperBound - start)
            callSize = block
            // Only candidates not below the current K-th score come back (exact: see scoreAndFilter).
            let threshold = top.threshold.map { $0.score.isNaN ? -Double.infinity : $0.score } ?? -Double.infinity
            let rowBase = fullScan ? nil : rows.baseAddress.map { $0 + start }
            let kept = index.scoreAndFilter(user: u, rows: rowBase, start: start, count: n, chain: chain, fusion: fused,
                                            relevance: relevance.isEmpty ? nil : relevance.baseAddress! + start,
                                            threshold: threshold, scratch: scratch, tuning: scanTuning, source: source)
            for j in 0..<kept {
                let i = start + Int(scratch.keptIndex[j])
                let row = fullScan ? Int32(i) : rows[i]
                if let hidden, RowBitmap.contains(hidden, Int(row)) { continue }
                top.push(Ranked(score: scratch.keptScore[j], id: ids[Int(row)], slot: slotIsPosition ? Int32(i) : row))
            }
            start += n
        }
        return (top, start - range.lowerBound, partial)
    }
}

/// Results of the parallel parts, each written by one thread into its own slot.
final class Parts: @unchecked Sendable {
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
