import Fusion

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Offline ranking and calibration metrics (`prerank eval`, `prerank tune-fusion`; the ResFlow
/// paper §5.2). Every function is pure; definitions are exact and documented per function so a
/// second implementation (Tests/reference/test_eval_metrics.py) can reproduce them bit for bit.
///
/// **Ranking order** (NDCG@K and WR@K, which look at the top K): score descending, ties by item
/// id ascending, then by position in the input — the order `POST /prerank` returns
/// (`Fusion.Ranked.ranksBefore`). NaN scores rank last.
public enum Metrics {
    /// Probabilities are clipped to `[ε, 1 − ε]` before the log-loss: Float sigmoids saturate
    /// at exactly 0 or 1 for |logit| ≳ 17 and one such row would make the mean infinite.
    public static let logLossEpsilon = 1e-7

    // MARK: AUC

    /// ROC AUC: the probability that a random positive scores above a random negative, ties
    /// counting one half:
    ///
    ///     AUC = (Σ_{i ∈ P} rank_i − |P|(|P|+1)/2) / (|P|·|N|)
    ///
    /// where `rank_i` is the 1-based rank of score i in ascending order, tied scores all taking
    /// the average of the ranks they span (so a tie between a positive and a negative counts ½).
    /// O(n log n). `nil` when either class is empty (AUC is undefined). NaN scores rank lowest.
    public static func auc(scores: UnsafeBufferPointer<Double>, positive: (Int) -> Bool) -> Double? {
        let n = scores.count
        guard n >= 2 else { return nil }
        var order = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i) }
            count = n
        }
        @inline(__always) func key(_ i: Int32) -> Double {
            let s = scores[Int(i)]
            return s.isNaN ? -Double.infinity : s
        }
        order.sort { key($0) < key($1) }
        var positives = 0.0
        var rankSum = 0.0
        var i = 0
        while i < n {
            var j = i + 1
            let s = key(order[i])
            while j < n && key(order[j]) == s { j += 1 }
            // rows i..<j tie: 1-based ranks i+1 ... j, average (i + 1 + j) / 2
            let averageRank = Double(i + 1 + j) / 2
            var tiedPositives = 0
            for r in i..<j where positive(Int(order[r])) { tiedPositives += 1 }
            positives += Double(tiedPositives)
            rankSum += Double(tiedPositives) * averageRank
            i = j
        }
        let negatives = Double(n) - positives
        guard positives > 0 && negatives > 0 else { return nil }
        return (rankSum - positives * (positives + 1) / 2) / (positives * negatives)
    }

    /// AUC of `scores` with `labels[i] > 0` as the positive class.
    public static func auc(scores: [Double], labels: [Double]) -> Double? {
        precondition(scores.count == labels.count)
        return scores.withUnsafeBufferPointer { s in labels.withUnsafeBufferPointer { l in auc(scores: s) { l[$0] > 0 } } }
    }

    /// Weighted ROC AUC (`prerank train --weighted-validation`): each row counts `w_i` times,
    /// ties counting one half,
    ///
    ///     AUC_w = Σ_{i ∈ P} Σ_{j ∈ N} w_i w_j [s_i > s_j] + ½ [s_i = s_j]  /  (W_P · W_N)
    ///
    /// with `W_P`, `W_N` the positives' and negatives' total weight. Integer weights give the AUC
    /// of the data with each row repeated that many times. `nil` when `W_P` or `W_N` is 0.
    public static func auc(scores: [Double], labels: [Double], weights: [Double]) -> Double? {
        precondition(scores.count == labels.count && scores.count == weights.count)
        func key(_ i: Int) -> Double { scores[i].isNaN ? -Double.infinity : scores[i] }
        let order = scores.indices.sorted { key($0) < key($1) }
        var negativesBelow = 0.0, wp = 0.0, sum = 0.0
        var i = 0
        while i < order.count {
            var j = i + 1
            while j < order.count && key(order[j]) == key(order[i]) { j += 1 }
            var tiedP = 0.0, tiedN = 0.0
            for r in i..<j {
                let w = weights[order[r]]
                if labels[order[r]] > 0 { tiedP += w } else { tiedN += w }
            }
            sum += tiedP * (negativesBelow + tiedN / 2)
            wp += tiedP
            negativesBelow += tiedN
            i = j
        }
        guard wp > 0 && negativesBelow > 0 else { return nil }
        return sum / (wp * negativesBelow)
    }

    // MARK: Log-loss

    /// Mean binary cross-entropy, with `y_i = 1` when `labels[i] > 0` else 0 and
    /// `p_i` clipped to `[ε, 1 − ε]` (`ε = logLossEpsilon` = 1e-7):
    ///
    ///     logloss = −(1/n) Σ_i [ y_i·ln p_i + (1 − y_i)·ln(1 − p_i) ]
    ///
    /// `nil` for no rows.
    public static func logLoss(probabilities: UnsafeBufferPointer<Double>, positive: (Int) -> Bool) -> Double? {
        guard !probabilities.isEmpty else { return nil }
        let eps = logLossEpsilon
        var sum = 0.0
        for i in 0..<probabilities.count {
            let p = min(max(probabilities[i], eps), 1 - eps)
            sum -= positive(i) ? log(p) : log(1 - p)
        }
        return sum / Double(probabilities.count)
    }

    public static func logLoss(probabilities: [Double], labels: [Double]) -> Double? {
        precondition(probabilities.count == labels.count)
        return probabilities.withUnsafeBufferPointer { p in labels.withUnsafeBufferPointer { l in logLoss(probabilities: p) { l[$0] > 0 } } }
    }

    /// Weighted mean binary cross-entropy, `Σ w_i ℓ_i / Σ w_i` (ℓ_i and ε as `logLoss`); nil when
    /// the weights sum to 0.
    public static func logLoss(probabilities: [Double], labels: [Double], weights: [Double]) -> Double? {
        precondition(probabilities.count == labels.count && probabilities.count == weights.count)
        let eps = logLossEpsilon
        var sum = 0.0, total = 0.0
        for i in probabilities.indices where weights[i] > 0 {
            let p = min(max(probabilities[i], eps), 1 - eps)
            sum -= weights[i] * (labels[i] > 0 ? log(p) : log(1 - p))
            total += weights[i]
        }
        return total > 0 ? sum / total : nil
    }

    // MARK: Ranking within one list

    /// Indices `0..<n` in ranking order (score descending, id ascending, then index).
    public static func ranking(scores: UnsafeBufferPointer<Double>, ids: UnsafeBufferPointer<Int64>) -> [Int] {
        precondition(scores.count == ids.count)
        return Array(0..<scores.count).sorted { a, b in
            let ra = Ranked(score: scores[a], id: ids[a], slot: 0), rb = Ranked(score: scores[b], id: ids[b], slot: 0)
            if ra.ranksBefore(rb) { return true }
            if rb.ranksBefore(ra) { return false }
            return a < b
        }
    }

    /// The captured and total weight of one list for WR@K (the paper's eq. 5):
    ///
    ///     captured = Σ_{i in the top K by ranking order} w_i,     total = Σ_i w_i
    ///
    /// `w_i` is the order count of row i (its last-task label). A list of `n ≤ K` rows captures
    /// everything. Both sums run over rows in input order, so the result does not depend on how
    /// the top K was found. Top K by a size-K heap (`Fusion.TopK`): O(n log K).
    ///
    /// This is the one implementation behind both `prerank eval` and `prerank tune-fusion`, so
    /// a tuned point's WR@K is exactly what eval reports for it.
    public static func capturedWeight(scores: UnsafeBufferPointer<Double>, ids: UnsafeBufferPointer<Int64>,
                                      weights: UnsafeBufferPointer<Double>, k: Int) -> (captured: Double, total: Double) {
        precondition(k >= 1 && scores.count == ids.count && ids.count == weights.count)
        let n = scores.count
        var total = 0.0
        for i in 0..<n { total += weights[i] }
        if n <= k || total == 0 { return (total, total) }
        var top = TopK(k: k)
        for i in 0..<n { top.push(Ranked(score: scores[i], id: ids[i], slot: Int32(i))) }
        var selected = [Bool](repeating: false, count: n)
        for r in top.sorted() { selected[Int(r.slot)] = true }
        var captured = 0.0
        for i in 0..<n where selected[i] { captured += weights[i] }
        return (captured, total)
    }

    /// NDCG@K of one list with graded gains:
    ///
    ///     DCG@K  = Σ_{r=1}^{min(K,n)} (2^{g_(r)} − 1) / log2(r + 1)      (g_(r): grade of the row at rank r)
    ///     IDCG@K = the same sum over the grades sorted descending
    ///     NDCG@K = DCG@K / IDCG@K,   nil when IDCG@K = 0 (no row with a positive grade)
    ///
    /// Rank r follows the ranking order above (ties by id, so the score a tie gets is the one the
    /// server would show).
    public static func ndcg(scores: UnsafeBufferPointer<Double>, ids: UnsafeBufferPointer<Int64>,
                            grades: UnsafeBufferPointer<Double>, k: Int) -> Double? {
        precondition(k >= 1 && scores.count == grades.count)
        let n = scores.count
        let m = min(k, n)
        guard m > 0 else { return nil }
        let ideal = grades.sorted(by: >)
        var idcg = 0.0
        for r in 0..<m { idcg += (pow(2, ideal[r]) - 1) / log2(Double(r + 2)) }
        guard idcg > 0 else { return nil }
        let order = ranking(scores: scores, ids: ids)
        var dcg = 0.0
        for r in 0..<m { dcg += (pow(2, grades[order[r]]) - 1) / log2(Double(r + 2)) }
        return dcg / idcg
    }

    // Array conveniences (tests, small callers).

    public static func capturedWeight(scores: [Double], ids: [Int64], weights: [Double], k: Int) -> (captured: Double, total: Double) {
        scores.withUnsafeBufferPointer { s in ids.withUnsafeBufferPointer { i in weights.withUnsafeBufferPointer { w in
            capturedWeight(scores: s, ids: i, weights: w, k: k)
        } } }
    }

    public static func ndcg(scores: [Double], ids: [Int64], grades: [Double], k: Int) -> Double? {
        scores.withUnsafeBufferPointer { s in ids.withUnsafeBufferPointer { i in grades.withUnsafeBufferPointer { g in
            ndcg(scores: s, ids: i, grades: g, k: k)
        } } }
    }

    public static func ranking(scores: [Double], ids: [Int64]) -> [Int] {
        scores.withUnsafeBufferPointer { s in ids.withUnsafeBufferPointer { ranking(scores: s, ids: $0) } }
    }
}
