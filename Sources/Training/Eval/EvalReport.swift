import Foundation
import Fusion
import TwinTower

/// What `prerank eval` reports.
///
/// - `tasks[k].auc`: ROC AUC over all scored impressions of task k's probability against its
///   label (> 0 is positive), ties averaged (`Metrics.auc`); `logloss`: mean clipped BCE
///   (`Metrics.logLoss`, ε = 1e-7).
/// - `wr@K` (the paper's eq. 5, micro-averaged): per request, rank by fused score (ties by id)
///   and sum the order counts (last task's label) of the top K; WR@K = Σ_requests captured /
///   Σ_requests all orders. Requests without orders add nothing to either sum; `nil` when the
///   file holds no order at all.
/// - `list_auc`: per request, the AUC of the fused score with order > 0 as positive; the
///   unweighted mean over requests that have both an ordered and a non-ordered row.
/// - `ndcg@K`: per request, NDCG@K of the fused ranking with grade g = the number of tasks whose
///   label is positive (for progressive labels: click 1, cart 2, order 3) and gain 2^g − 1;
///   the unweighted mean over requests with at least one positive label.
/// - `rows`: impressions scored (rows whose item is not in the index are skipped and counted in
///   `unknownItems`).
public struct EvalReport: Sendable, Equatable {
    public struct Task: Sendable, Equatable {
        public var name: String
        public var label: String
        public var auc: Double?
        public var logLoss: Double?
        public var positives: Int
    }

    public var tasks: [Task]
    public var k: Int
    public var fusion: FusionPolicy
    public var weightedRecall: Double?
    public var listAUC: Double?
    public var ndcg: Double?
    public var rows: Int
    public var requests: Int
    public var requestsWithOrders: Int
    public var listAUCRequests: Int
    public var ndcgRequests: Int
    public var unknownItems: Int
    public var capturedOrders: Double
    public var totalOrders: Double

    /// SPEC §4 shape: `{"tasks": {...}, "lists": {"wr@K", "list_auc", "ndcg@K"}, "rows": N}`, plus
    /// `skipped`, `counts` and `fusion` keys. Undefined metrics are `null`.
    public func json() -> String {
        let taskPart = tasks.map { "\(JSONText.quote($0.name)): {\"auc\": \(JSONText.number($0.auc)), \"logloss\": \(JSONText.number($0.logLoss))}" }
            .joined(separator: ", ")
        return "{\"tasks\": {\(taskPart)}, "
            + "\"lists\": {\"wr@\(k)\": \(JSONText.number(weightedRecall)), \"list_auc\": \(JSONText.number(listAUC)), \"ndcg@\(k)\": \(JSONText.number(ndcg))}, "
            + "\"rows\": \(rows), "
            + "\"skipped\": {\"unknown_items\": \(unknownItems)}, "
            + "\"counts\": {\"requests\": \(requests), \"requests_with_orders\": \(requestsWithOrders), "
            + "\"list_auc_requests\": \(listAUCRequests), \"ndcg_requests\": \(ndcgRequests), "
            + "\"orders\": \(JSONText.number(totalOrders)), \"orders_in_top_k\": \(JSONText.number(capturedOrders))}, "
            + "\"fusion\": \(JSONText.fusion(fusion))}"
    }

    /// A readable table for the terminal.
    public func table() -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.6f", $0) } ?? "n/a" }
        var lines: [String] = []
        lines.append("rows \(rows) in \(requests) requests (\(unknownItems) rows skipped: item not in the index)")
        lines.append("fusion \(FusionText.describe(fusion))")
        lines.append("")
        let w = max(6, tasks.map(\.name.count).max() ?? 0)
        lines.append("task".padding(toLength: w, withPad: " ", startingAt: 0) + "  label     positives        AUC    logloss")
        for task in tasks {
            lines.append(task.name.padding(toLength: w, withPad: " ", startingAt: 0) + "  "
                + task.label.padding(toLength: 8, withPad: " ", startingAt: 0)
                + String(format: "%11d", task.positives) + "  " + f(task.auc).leftPad(9) + "  " + f(task.logLoss).leftPad(9))
        }
        lines.append("")
        lines.append("list metrics of the fused score (per request_id)")
        lines.append("  WR@\(k)".padding(toLength: 14, withPad: " ", startingAt: 0) + f(weightedRecall)
            + "   (\(JSONText.plain(capturedOrders)) of \(JSONText.plain(totalOrders)) orders in the top \(k); \(requestsWithOrders) requests with orders)")
        lines.append("  List AUC".padding(toLength: 14, withPad: " ", startingAt: 0) + f(listAUC) + "   (mean over \(listAUCRequests) requests with both classes)")
        lines.append("  NDCG@\(k)".padding(toLength: 14, withPad: " ", startingAt: 0) + f(ndcg) + "   (mean over \(ndcgRequests) requests with a positive label)")
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

/// Small JSON text helpers (numbers in shortest round-trip form, `null` for nil / non-finite).
enum JSONText {
    static func quote(_ s: String) -> String { JSONString.quote(s) }

    static func number(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "null" }
        return plain(v)
    }

    /// `20` rather than `20.0` for integral values; otherwise Swift's shortest round-trip form.
    static func plain(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return v.description
    }

    static func fusion(_ f: FusionPolicy) -> String {
        "{\"formula\": \"\(f.formula.rawValue)\", \"alpha\": \(number(f.alpha)), \"beta\": \(number(f.beta)), \"gamma\": \(number(f.gamma))}"
    }
}
