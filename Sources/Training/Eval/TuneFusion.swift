import Dispatch
import Foundation
import Fusion

/// One formula's search grid. For the additive formula γ (the relevance weight) is searched only
/// when the data has a relevance column; for the multiplicative formula γ is always 0.
public struct FusionGrid: Sendable, Equatable {
    public var formula: FusionFormula
    public var alphas: [Double]
    public var betas: [Double]
    public var gammas: [Double]

    public init(formula: FusionFormula, alphas: [Double], betas: [Double], gammas: [Double] = [0]) {
        self.formula = formula
        self.alphas = alphas
        self.betas = betas
        self.gammas = gammas.isEmpty ? [0] : gammas
    }

    /// Additive defaults: α ∈ {0, 0.25, …, 1}, β log-spaced {0, 1, 2, 5, 10, 20, 50, 100, 200}
    /// (the paper's best is CTR + 20·CTCVR), γ ∈ {0, 0.005, 0.01, 0.02, 0.05, 0.1} with
    /// relevance (a level 0..3 against CTR ≈ 0.08), else {0}. Additive scores rank alike under
    /// a common positive scale of (α, β, γ), so α = 0.5, β = 10 ties α = 1, β = 20.
    public static func defaultAdditive(relevance: Bool) -> FusionGrid {
        FusionGrid(formula: .additive, alphas: (0...4).map { Double($0) / 4 },
                   betas: [0, 1, 2, 5, 10, 20, 50, 100, 200],
                   gammas: relevance ? [0, 0.005, 0.01, 0.02, 0.05, 0.1] : [0])
    }

    /// Multiplicative defaults: `CTR^α · CTCVR^β`, α, β ∈ {0, 0.2, …, 2}.
    public static func defaultMultiplicative() -> FusionGrid {
        let steps = (0...10).map { Double($0) / 5 }
        return FusionGrid(formula: .multiplicative, alphas: steps, betas: steps, gammas: [0])
    }

    public var pointCount: Int { alphas.count * betas.count * gammas.count }

    public func policy(alpha a: Int, beta b: Int, gamma g: Int) -> FusionPolicy {
        FusionPolicy(formula: formula, alpha: alphas[a], beta: betas[b], gamma: formula == .multiplicative ? 0 : gammas[g])
    }
}

/// WR@K at every point of one grid.
public struct FusionGridResult: Sendable, Equatable {
    public var grid: FusionGrid
    public var k: Int
    /// `wr[(g * alphas.count + a) * betas.count + b]`; nil when the data has no order.
    public var wr: [Double?]
    public var best: FusionPolicy
    public var bestWR: Double?
    public var bestIndex: (alpha: Int, beta: Int, gamma: Int)

    public static func == (l: FusionGridResult, r: FusionGridResult) -> Bool {
        l.grid == r.grid && l.k == r.k && l.wr == r.wr && l.best == r.best && l.bestWR == r.bestWR
            && l.bestIndex == r.bestIndex
    }

    public func wr(alpha a: Int, beta b: Int, gamma g: Int) -> Double? {
        wr[(g * grid.alphas.count + a) * grid.betas.count + b]
    }
}

/// `prerank tune-fusion`: grid search of the fusion weights by WR@K.
///
/// Probabilities are computed once (`Evaluator.score`); each grid point only re-fuses and
/// re-selects the top K. Only requests with at least one order can change WR@K, so the search
/// runs over those alone (the others add 0 to both sums). Each point's WR@K goes through
/// `Metrics.capturedWeight`, the function eval uses, over the same requests in the same order:
/// the reported best is exactly what `prerank eval` reports at those weights.
/// Hands a buffer to `concurrentPerform` workers that write disjoint elements.
private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

public enum TuneFusion {
    /// Requests with orders, gathered contiguously for fast re-fusion.
    public struct Lists: Sendable {
        public var ctr: [Float]
        public var ctcvr: [Float]
        public var relevance: [Float]
        public var ids: [Int64]
        public var weights: [Double]
        /// List j is `start[j]..<start[j+1]`.
        public var start: [Int]
        public var count: Int { start.count - 1 }
        /// The summed order weight WR@K is a share of.
        public var orders: Double { weights.reduce(0, +) }

        public init(_ data: ScoredImpressions) {
            let t = data.taskCount
            ctr = []; ctcvr = []; relevance = []; ids = []; weights = []
            start = [0]
            for r in 0..<data.requests {
                let rows = data.requestRows(r)
                guard rows.contains(where: { data.labels[Int($0) * t + t - 1] > 0 }) else { continue }
                for i32 in rows {
                    let i = Int(i32)
                    ctr.append(data.probabilities[i * t])
                    ctcvr.append(data.probabilities[i * t + t - 1])
                    relevance.append(data.relevance?[i] ?? 0)
                    ids.append(data.itemIDs[i])
                    weights.append(Double(data.labels[i * t + t - 1]))
                }
                start.append(ctr.count)
            }
        }

        /// WR@K under one fusion (nil when there is no order).
        public func weightedRecall(_ fusion: FusionPolicy, k: Int, scratch: inout [Double]) -> Double? {
            var captured = 0.0, total = 0.0
            for j in 0..<count {
                let range = start[j]..<start[j + 1]
                scratch.removeAll(keepingCapacity: true)
                for i in range { scratch.append(fusion.score(ctr: ctr[i], ctcvr: ctcvr[i], relevance: relevance[i])) }
                let (c, w) = scratch.withUnsafeBufferPointer { s in
                    ids.withUnsafeBufferPointer { idp in
                        weights.withUnsafeBufferPointer { wp in
                            Metrics.capturedWeight(scores: s, ids: UnsafeBufferPointer(rebasing: idp[range]),
                                                   weights: UnsafeBufferPointer(rebasing: wp[range]), k: k)
                        }
                    }
                }
                captured += c
                total += w
            }
            return total > 0 ? captured / total : nil
        }
    }

    /// WR@K of `data` under one fusion: the same number `Evaluator.evaluate` reports.
    public static func weightedRecall(_ data: ScoredImpressions, fusion: FusionPolicy, k: Int) -> Double? {
        var scratch: [Double] = []
        return Lists(data).weightedRecall(fusion, k: k, scratch: &scratch)
    }

    /// Searches one grid. The best point maximises WR@K. Exact ties are common (weights that
    /// differ by a common factor rank identically; WR@K moves in steps of whole orders): they go
    /// to the point whose 3×3 α × β neighbourhood has the higher mean WR@K (a plateau rather than
    /// a lone peak), then to the larger α, the smaller β, the smaller γ — so α = 1, β = 20 is
    /// preferred to α = 0.5, β = 10.
    ///
    /// Grid points run on `parallelism` threads (default: one per core).
    public static func search(_ lists: Lists, grid: FusionGrid, k: Int, parallelism: Int? = nil) -> FusionGridResult {
        precondition(k >= 1)
        let na = grid.alphas.count, nb = grid.betas.count, ng = grid.gammas.count
        // Grid points are independent: split them over the cores, one scratch buffer per worker.
        var wr = [Double?](repeating: nil, count: na * nb * ng)
        let workers = max(1, min(parallelism ?? ProcessInfo.processInfo.activeProcessorCount, wr.count))
        let total = wr.count
        wr.withUnsafeMutableBufferPointer { out in
            let results = UncheckedBox(out)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var scratch: [Double] = []
                var p = w
                while p < total {
                    let b = p % nb, a = (p / nb) % na, g = p / (nb * na)
                    results.value[p] = lists.weightedRecall(grid.policy(alpha: a, beta: b, gamma: g), k: k, scratch: &scratch)
                    p += workers
                }
            }
        }
        // Mean WR@K of a point's 3×3 neighbourhood in the α × β plane (same γ): the tie-break
        // that prefers a plateau over an isolated peak.
        func neighbourhood(_ a: Int, _ b: Int, _ g: Int) -> Double {
            var sum = 0.0, count = 0.0
            for da in -1...1 {
                for db in -1...1 {
                    let x = a + da, y = b + db
                    guard x >= 0, x < na, y >= 0, y < nb, let v = wr[(g * na + x) * nb + y] else { continue }
                    sum += v
                    count += 1
                }
            }
            return count > 0 ? sum / count : 0
        }
        var best = (alpha: 0, beta: 0, gamma: 0)
        var bestWR: Double? = nil
        var bestPlateau = 0.0
        func better(_ v: Double, _ plateau: Double, _ a: Int, _ b: Int, _ g: Int) -> Bool {
            guard let current = bestWR else { return true }
            if v != current { return v > current }
            if plateau != bestPlateau { return plateau > bestPlateau }
            let (ca, cb, cg) = (grid.alphas[best.alpha], grid.betas[best.beta], grid.gammas[best.gamma])
            let (xa, xb, xg) = (grid.alphas[a], grid.betas[b], grid.gammas[g])
            if xa != ca { return xa > ca }
            if xb != cb { return xb < cb }
            return xg < cg
        }
        for g in 0..<ng {
            for a in 0..<na {
                for b in 0..<nb {
                    guard let v = wr[(g * na + a) * nb + b] else { continue }
                    let plateau = neighbourhood(a, b, g)
                    if better(v, plateau, a, b, g) {
                        bestWR = v
                        bestPlateau = plateau
                        best = (a, b, g)
                    }
                }
            }
        }
        return FusionGridResult(grid: grid, k: k, wr: wr, best: grid.policy(alpha: best.alpha, beta: best.beta, gamma: best.gamma),
                                bestWR: bestWR, bestIndex: best)
    }

    public static func search(_ data: ScoredImpressions, grid: FusionGrid, k: Int) -> FusionGridResult {
        search(Lists(data), grid: grid, k: k)
    }

    // MARK: Output

    /// A readable report: per formula the α × β table (at the best γ), the best point and the
    /// config lines to paste.
    public static func text(_ results: [FusionGridResult], rows: Int, requests: Int, listsWithOrders: Int) -> String {
        var out: [String] = []
        out.append("tune-fusion: \(rows) rows, \(requests) requests, \(listsWithOrders) with orders")
        for res in results {
            let k = res.k, grid = res.grid
            let g = res.bestIndex.gamma
            out.append("")
            var title = "\(grid.formula.rawValue): WR@\(k) over α (rows) × β (columns)"
            if grid.formula == .additive && grid.gammas.count > 1 { title += " at γ = \(JSONText.plain(grid.gammas[g])) (best γ)" }
            out.append(title)
            let cw = max(8, grid.betas.map { JSONText.plain($0).count }.max()! + 1)
            out.append("α \\ β".padding(toLength: 7, withPad: " ", startingAt: 0)
                + grid.betas.map { JSONText.plain($0).leftPad(cw) }.joined(separator: " "))
            for a in 0..<grid.alphas.count {
                var line = JSONText.plain(grid.alphas[a]).padding(toLength: 7, withPad: " ", startingAt: 0)
                line += (0..<grid.betas.count).map { b -> String in
                    let v = res.wr(alpha: a, beta: b, gamma: g).map { String(format: "%.4f", $0) } ?? "n/a"
                    let mark = (a, b) == (res.bestIndex.alpha, res.bestIndex.beta) ? "*" : " "
                    return (v + mark).leftPad(cw)
                }.joined(separator: " ")
                out.append(line)
            }
            if grid.formula == .additive && grid.gammas.count > 1 {
                let perGamma = grid.gammas.indices.map { gi -> String in
                    let m = (0..<grid.alphas.count).flatMap { a in (0..<grid.betas.count).compactMap { res.wr(alpha: a, beta: $0, gamma: gi) } }.max()
                    return "γ=\(JSONText.plain(grid.gammas[gi])): \(m.map { String(format: "%.4f", $0) } ?? "n/a")"
                }
                out.append("best WR@\(k) per γ: " + perGamma.joined(separator: ", "))
            }
            out.append("best \(FusionText.describe(res.best))  WR@\(k) = \(res.bestWR.map { String(format: "%.6f", $0) } ?? "n/a")")
            out.append("config lines:")
            out.append(FusionText.configYAML(res.best))
        }
        if results.count > 1, let overall = overallBest(results) {
            out.append("")
            out.append("overall best: \(FusionText.describe(overall.best))  WR@\(overall.k) = \(overall.bestWR.map { String(format: "%.6f", $0) } ?? "n/a")")
            out.append(FusionText.configYAML(overall.best))
        }
        return out.joined(separator: "\n")
    }

    // MARK: Warnings

    /// Below this many orders a grid's WR@K moves in steps of 0.1 % or more, and points a step
    /// apart differ by noise (issue #27: a best point resting on 118 orders went unremarked).
    public static let fewOrders = 1000.0

    /// Why the best point of `r` may not be the best weighting, one line each (empty: none).
    ///
    /// Edge: both formulas rank by the ratio β/α (and γ/α): additive `α·CTR + β·CTCVR` up to
    /// the factor α, multiplicative `CTR^α·CTCVR^β` up to the power 1/α. A best ratio that is
    /// the grid's largest or smallest may continue past it, so the edge is judged on the ratio
    /// (α = 1 with β inside the grid is not an edge), and on γ at the largest γ tried.
    /// Few orders: `orders` (the summed order weight of the lists) under `fewOrders`.
    public static func warnings(_ r: FusionGridResult, orders: Double) -> [String] {
        var out: [String] = []
        let g = r.grid, bi = r.bestIndex
        func ratio(_ a: Double, _ b: Double) -> Double? { a == 0 ? (b == 0 ? nil : .infinity) : b / a }
        let ratios = g.alphas.flatMap { a in g.betas.compactMap { ratio(a, $0) } }
        let name = g.formula.rawValue
        if let best = ratio(g.alphas[bi.alpha], g.betas[bi.beta]), let lo = ratios.min(), let hi = ratios.max(), lo < hi, r.bestWR != nil {
            if best == hi {
                out.append("the \(name) best point (α \(JSONText.plain(g.alphas[bi.alpha])), β \(JSONText.plain(g.betas[bi.beta]))) is on the grid's edge: the largest β/α it tries; a larger β may score better (extend the β grid)")
            } else if best == lo {
                out.append("the \(name) best point (α \(JSONText.plain(g.alphas[bi.alpha])), β \(JSONText.plain(g.betas[bi.beta]))) is on the grid's edge: the smallest β/α it tries; a smaller β (or larger α) may score better (extend the grid)")
            }
        }
        if g.gammas.count > 1 && bi.gamma == g.gammas.count - 1 && r.bestWR != nil {
            out.append("the \(name) best γ (\(JSONText.plain(g.gammas[bi.gamma]))) is the largest the grid tries; a larger γ may score better (extend --gamma)")
        }
        if orders < fewOrders {
            let step = orders > 0 ? 100 / orders : 100
            out.append(String(format: "the search rests on %.0f orders: WR@%d moves in steps of %.2f %%, so points that close are not told apart by these data; use more (join-logs over a longer window)", orders, r.k, step))
        }
        return out
    }

    /// The result whose best WR@K is highest (the first on a tie).
    public static func overallBest(_ results: [FusionGridResult]) -> FusionGridResult? {
        var best: FusionGridResult? = nil
        for r in results {
            guard let v = r.bestWR else { continue }
            if best?.bestWR.map({ v > $0 }) ?? true { best = r }
        }
        return best
    }

    /// JSON: `{"k", "rows", "requests", "requests_with_orders", "formulas": {"additive": {"best":
    /// {"formula","alpha","beta","gamma","wr@K"}, "grid": {"alpha": [...], "beta": [...],
    /// "gamma": [...]}, "points": [{"alpha","beta","gamma","wr@K"}, …]}, …}, "best": {…}}`.
    public static func json(_ results: [FusionGridResult], rows: Int, requests: Int, listsWithOrders: Int) -> String {
        guard let k = results.first?.k else { return "{}" }
        func point(_ p: FusionPolicy, _ v: Double?) -> String {
            "{\"formula\": \"\(p.formula.rawValue)\", \"alpha\": \(JSONText.number(p.alpha)), \"beta\": \(JSONText.number(p.beta)), \"gamma\": \(JSONText.number(p.gamma)), \"wr@\(k)\": \(JSONText.number(v))}"
        }
        var formulas: [String] = []
        for res in results {
            let grid = res.grid
            var points: [String] = []
            for g in grid.gammas.indices {
                for a in grid.alphas.indices {
                    for b in grid.betas.indices {
                        points.append(point(grid.policy(alpha: a, beta: b, gamma: g), res.wr(alpha: a, beta: b, gamma: g)))
                    }
                }
            }
            let axes = "{\"alpha\": [\(grid.alphas.map { JSONText.number($0) }.joined(separator: ", "))], "
                + "\"beta\": [\(grid.betas.map { JSONText.number($0) }.joined(separator: ", "))], "
                + "\"gamma\": [\(grid.gammas.map { JSONText.number($0) }.joined(separator: ", "))]}"
            formulas.append("\"\(grid.formula.rawValue)\": {\"best\": \(point(res.best, res.bestWR)), \"grid\": \(axes), \"points\": [\(points.joined(separator: ", "))]}")
        }
        let overall = overallBest(results).map { point($0.best, $0.bestWR) } ?? "null"
        return "{\"k\": \(k), \"rows\": \(rows), \"requests\": \(requests), \"requests_with_orders\": \(listsWithOrders), "
            + "\"formulas\": {\(formulas.joined(separator: ", "))}, \"best\": \(overall)}"
    }
}
