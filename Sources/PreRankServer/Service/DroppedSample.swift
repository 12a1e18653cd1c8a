import Catalog
import TwinTower

/// `request_log.candidate_sample` (issue #15): for a logged request, a uniform sample of the
/// candidates pre-rank scored and did *not* return, with their task probabilities and their
/// inclusion probability.
///
/// Why: a pre-rank model trained only on what it exposed never sees the rest of its candidate
/// space (sample selection bias; cf. RecFlow, ICLR 2025). Logged with inclusion probability π,
/// each sampled candidate stands for 1/π dropped ones (`weight` = 1/π when joined for training).
///
/// The pool is the distinct known candidates minus the returned items (the whole served catalog
/// minus the returned items for a request without candidates); unknown ids are not candidates.
/// The sample is uniform without replacement: a partial Fisher–Yates shuffle of the pool, or, for a
/// whole-index request, rejection sampling of catalog positions (base rows not hidden, then delta
/// rows) when the pool is much larger than the sample. π = sampled / pool size.
public enum DroppedSample {
    public struct Sample: Sendable {
        /// Probability that any one dropped candidate is in `items`.
        public var inclusion: Double
        public var items: [(id: Int64, probabilities: [Float])]
    }

    /// Draws `n` dropped candidates of `request` answered by `result` on `bundle` (nil when
    /// none were dropped or the user row no longer encodes).
    public static func draw<R: RandomNumberGenerator>(request: PreRankRequest, result: ScoringResult, bundle: ServingBundle, n: Int,
                                                      using rng: inout R) -> Sample? {
        guard n > 0 else { return nil }
        let returned = Set(result.items.map(\.id))
        let index = bundle.index, delta = bundle.delta
        var picked: [(Int64, ItemDelta.Resolution)] = []
        if let candidates = request.candidates {
            var seen = Set<Int64>()
            var pool: [(Int64, ItemDelta.Resolution)] = []
            for id in candidates where !returned.contains(id) && seen.insert(id).inserted {
                let r = delta.resolve(id, base: index)
                if r != .unknown { pool.append((id, r)) }
            }
            guard !pool.isEmpty else { return nil }
            let m = min(n, pool.count)
            for i in 0..<m { pool.swapAt(i, Int.random(in: i..<pool.count, using: &rng)) }
            picked = Array(pool[0..<m])
            return Sample(inclusion: Double(m) / Double(pool.count), items: probabilities(picked, request: request, bundle: bundle))
        }
        let poolSize = bundle.itemCount - returned.count
        guard poolSize > 0 else { return nil }
        let deltaCount = delta.index?.count ?? 0
        let positions = index.count + deltaCount
        /// The catalog entry at a position, or nil when it is not in the pool.
        func entry(_ p: Int) -> (Int64, ItemDelta.Resolution)? {
            if p < index.count {
                let id = index.ids[p]
                guard case .base = delta.refine(id, baseRow: Int32(p)), !returned.contains(id) else { return nil }
                return (id, .base(Int32(p)))
            }
            let r = Int32(p - index.count)
            let id = delta.index!.ids[Int(r)]
            return delta.isStale(r) || returned.contains(id) ? nil : (id, .delta(r))
        }
        let m = min(n, poolSize)
        if poolSize <= 4 * m {
            var pool = (0..<positions).compactMap(entry)
            for i in 0..<m { pool.swapAt(i, Int.random(in: i..<pool.count, using: &rng)) }
            picked = Array(pool[0..<m])
        } else {
            var chosen = Set<Int>()
            while picked.count < m {
                let p = Int.random(in: 0..<positions, using: &rng)
                guard let e = entry(p), chosen.insert(p).inserted else { continue }
                picked.append(e)
            }
        }
        return Sample(inclusion: Double(m) / Double(poolSize), items: probabilities(picked, request: request, bundle: bundle))
    }

    /// Task probabilities of the picked entries, as the answer's items get them (F32 rescore
    /// rows where the index has them).
    static func probabilities(_ picked: [(Int64, ItemDelta.Resolution)], request: PreRankRequest,
                              bundle: ServingBundle) -> [(id: Int64, probabilities: [Float])] {
        guard let row = try? ScoringEngine.userRow(request, bundle: bundle), let x = try? bundle.userEncoder.encode(row) else { return [] }
        let user = bundle.userTower.embed(x)
        let t = bundle.index.taskCount
        let source: ItemIndex.VectorSource = bundle.index.rescore != nil ? .rescore : .primary
        var out: [(id: Int64, probabilities: [Float])] = []
        out.reserveCapacity(picked.count)
        var probs = [Float](repeating: 0, count: t)
        for (id, resolution) in picked {
            let (table, r): (ItemIndex?, Int32)
            switch resolution {
            case .base(let b): (table, r) = (bundle.index, b)
            case .delta(let d): (table, r) = (bundle.delta.index, d)
            case .unknown: continue
            }
            guard let table else { continue }
            user.withUnsafeBufferPointer { u in
                probs.withUnsafeMutableBufferPointer { p in
                    table.probabilities(user: u.baseAddress!, rows: [r], count: 1, chain: bundle.chain, source: source, into: p.baseAddress!)
                }
            }
            out.append((id, probs))
        }
        return out
    }
}
