import Foundation
import Fusion
import TwinTower

/// The model's outputs for every impression of a test file, kept columnar and grouped by
/// request: computed once by `Evaluator.score`, then fused and measured any number of times
/// (eval uses one fusion, tune-fusion a grid of them).
///
/// Rows are kept in input order (`row` below); `requestRows(r)` gives request r's rows in input
/// order, so rows of one request need not be contiguous in the file.
public struct ScoredImpressions: Sendable {
    public var taskNames: [String]
    /// The label column of each task (`click`, `cart`, `order`).
    public var labelColumns: [String]
    public var taskCount: Int { taskNames.count }
    /// Request ids in order of first appearance.
    public var requestIDs: [String]
    /// Per row: index into `requestIDs`.
    public var requestOfRow: [Int32]
    public var itemIDs: [Int64]
    /// `[rows × T]` probabilities, task order (`p_0` = CTR, `p_{T-1}` = CTCVR).
    public var probabilities: [Float]
    /// `[rows × T]` label values as read (0/1; any value > 0 is a positive; the last task's
    /// value is the order count `W` of WR@K).
    public var labels: [Float]
    /// Per row relevance level from the `relevance` column, when the file has one.
    public var relevance: [Float]?
    /// Rows of request r are `grouped[groupStart[r]..<groupStart[r+1]]` (row numbers, input order).
    public var grouped: [Int32]
    public var groupStart: [Int]
    /// Rows skipped because their item_id is not in the index.
    public var unknownItems: Int
    /// User-side fields with no column in the file (encoded as missing, like the server does).
    public var missingUserColumns: [String]
    /// Distinct user-tower evaluations (the per-request user vector cache's misses).
    public var userTowerRuns: Int

    public var rows: Int { itemIDs.count }
    public var requests: Int { requestIDs.count }
    public var hasRelevance: Bool { relevance != nil }

    public func requestRows(_ r: Int) -> ArraySlice<Int32> { grouped[groupStart[r]..<groupStart[r + 1]] }
    /// Candidates in the longest request's list: a K of WR@K / NDCG@K at or above it ranks every
    /// candidate of every list, so WR@K is 1 whatever the scores.
    public var longestList: Int { (0..<requests).reduce(0) { max($0, groupStart[$1 + 1] - groupStart[$1]) } }

    /// The fused score of one row under `fusion`: CTR = first task, CTCVR = last task,
    /// relevance 0 when the file has no relevance column.
    @inline(__always)
    public func fused(row i: Int, _ fusion: FusionPolicy) -> Double {
        let t = taskCount
        return fusion.score(ctr: probabilities[i * t], ctcvr: probabilities[i * t + t - 1], relevance: relevance?[i] ?? 0)
    }

    /// Writes `request_id,item_id,<task>…,score`: one row per scored impression in input order,
    /// one probability column per task (named by task), `score` = fused score. Numbers are
    /// written in shortest round-trip form (Float for probabilities, Double for the score), so
    /// reading the file back gives exactly the values eval measured.
    public func writePredictions(to path: String, fusion: FusionPolicy) throws(FormatError) {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw FormatError(path, "cannot create the predictions file")
        }
        defer { try? handle.close() }
        var out = (["request_id", "item_id"] + taskNames + ["score"]).map(csvField).joined(separator: ",") + "\n"
        let t = taskCount
        do {
            for i in 0..<rows {
                out += csvField(requestIDs[Int(requestOfRow[i])])
                out += ","
                out += String(itemIDs[i])
                for k in 0..<t {
                    out += ","
                    out += probabilities[i * t + k].description
                }
                out += ","
                out += fused(row: i, fusion).description
                out += "\n"
                if out.utf8.count >= 1 << 20 {
                    try handle.write(contentsOf: Data(out.utf8))
                    out.removeAll(keepingCapacity: true)
                }
            }
            try handle.write(contentsOf: Data(out.utf8))
        } catch {
            throw FormatError(path, "cannot write: \(error.localizedDescription)")
        }
    }
}

/// RFC 4180 quoting when needed.
func csvField(_ s: String) -> String {
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// `prerank eval`: runs a model + item index over a test file (SPEC §3 impressions) and measures
/// per-task AUC / log-loss and the list metrics of the fused score (WR@K, List AUC, NDCG@K).
///
/// Probabilities come from the serving path: the model's user tower (`FeatureEncoder` +
/// `Tower.embed`) once per distinct user-query row, and the item index's kernels
/// (`ItemIndex.probabilities`, which also applies the logit chain). Item-side columns of the
/// test file are ignored: items are represented by their index vectors, as in serving.
public struct Evaluator: Sendable {
    public let model: Model
    public let index: ItemIndex

    /// The relevance level column (optional; 0..3 from another system, SPEC §2).
    public static let relevanceColumn = "relevance"
    /// The user vector cache is emptied when it holds this many distinct user-query rows.
    static let userCacheLimit = 16_384

    public init(model: Model, index: ItemIndex) {
        self.model = model
        self.index = index
    }

    /// Loads a model directory and an index built from it (the fingerprint must match).
    public init(modelDirectory: String, indexPath: String) throws(FormatError) {
        let model = try ModelStore.load(directory: modelDirectory)
        self.init(model: model, index: try ItemIndex(path: indexPath, model: model))
    }

    /// Reads `path` (columns: `request_id`, user-side fields, `item_id`, item-side fields, one
    /// label column per task as named in the model, optional `relevance`; other columns are
    /// ignored) and computes every impression's per-task probabilities.
    ///
    /// The file is streamed (memory-mapped CSV reader); what is kept is columnar: per row the
    /// request number, item id, T probabilities, T labels and the relevance (about 40 bytes per
    /// row for T = 3). Rows of a request need not be contiguous: they are grouped by request id
    /// afterwards with a counting sort. The user tower runs once per distinct user-query row
    /// (cache keyed by the raw user-side cells), so a request's rows share one forward pass.
    ///
    /// - throws: `FormatError` naming the file and line for a missing column, a row of the wrong
    ///   width, a non-integer item_id, a bad label / relevance / feature value.
    public func score(data path: String, progress: ((Int) -> Void)? = nil) throws(FormatError) -> ScoredImpressions {
        var reader = try CSVReader(path: path)
        let columns = reader.columns
        guard let requestColumn = columns["request_id"] else { throw FormatError(path, "no request_id column in the header") }
        guard let itemColumn = columns["item_id"] else { throw FormatError(path, "no item_id column in the header") }
        let t = model.spec.tasks.count
        var labelColumns: [Int] = []
        for task in model.spec.tasks {
            guard let c = columns[task.label] else {
                throw FormatError(path, "no label column \(task.label) (task \(task.name)) in the header")
            }
            labelColumns.append(c)
        }
        let relevanceColumn = columns[Self.relevanceColumn]
        let encoder = model.encoder(.user)
        let userFields = encoder.fields.map { ($0.spec, columns[$0.spec.name]) }
        let missing = userFields.filter { $0.1 == nil }.map(\.0.name)
        let present = userFields.compactMap { f in f.1.map { (f.0, $0) } }
        let chain = model.chain
        let userWidth = t * model.d

        var requestIndex: [String: Int32] = [:]
        var requestIDs: [String] = []
        var requestOfRow: [Int32] = []
        var itemIDs: [Int64] = []
        var probabilities: [Float] = []
        var labels: [Float] = []
        var relevance: [Float] = []
        var unknown = 0
        var towerRuns = 0
        var cache: [String: [Float]] = [:]
        var rowNumber: [Int32] = [0]
        var out = [Float](repeating: 0, count: t)
        var seen = 0

        while let cells = try reader.next() {
            let line = reader.line
            guard cells.count == reader.header.count else {
                throw FormatError(path, "line \(line): \(cells.count) columns, header has \(reader.header.count)")
            }
            seen += 1
            if seen % 65_536 == 0 { progress?(seen) }
            guard let id = CSVFeatures.int64(cells[itemColumn]) else {
                throw FormatError(path, "line \(line): item_id \"\(cells[itemColumn])\" is not an integer")
            }
            // Labels and relevance are checked on every row, known item or not.
            var rowLabels = [Float](repeating: 0, count: t)
            for k in 0..<t {
                let cell = cells[labelColumns[k]].trimmingCharacters(in: .whitespaces)
                guard let v = Double(cell), v.isFinite, v >= 0 else {
                    throw FormatError(path, "line \(line): label \(model.spec.tasks[k].label) \"\(cell)\" is not a number ≥ 0")
                }
                rowLabels[k] = Float(v)
            }
            var rel: Float = 0
            if let rc = relevanceColumn {
                let cell = cells[rc].trimmingCharacters(in: .whitespaces)
                if !cell.isEmpty {
                    guard let v = Double(cell), v.isFinite else {
                        throw FormatError(path, "line \(line): relevance \"\(cell)\" is not a finite number")
                    }
                    rel = Float(v)
                }
            }
            let row = index.row(of: id)
            guard row >= 0 else { unknown += 1; continue }

            // User-query vectors, cached by the raw user-side cells.
            var key = ""
            for (_, c) in present { key += cells[c]; key += "\u{1F}" }
            let user: [Float]
            if let cached = cache[key] {
                user = cached
            } else {
                var features = FeatureRow()
                for (spec, c) in present {
                    do {
                        features[spec.name] = try CSVFeatures.value(cells[c], kind: spec.kind, column: spec.name, line: line)
                    } catch {
                        throw FormatError(path, "line \(line): \(error.message) (column \(spec.name))")
                    }
                }
                do {
                    user = model.userTower.embed(try encoder.encode(features))
                } catch {
                    throw FormatError(path, "line \(line): \(error.description)")
                }
                precondition(user.count == userWidth)
                towerRuns += 1
                if cache.count >= Self.userCacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[key] = user
            }
            rowNumber[0] = row
            user.withUnsafeBufferPointer { u in
                rowNumber.withUnsafeBufferPointer { r in
                    out.withUnsafeMutableBufferPointer { o in
                        index.probabilities(user: u.baseAddress!, rows: r.baseAddress!, count: 1, chain: chain, into: o.baseAddress!)
                    }
                }
            }

            let requestID = cells[requestColumn]
            let r: Int32
            if let known = requestIndex[requestID] {
                r = known
            } else {
                r = Int32(requestIDs.count)
                requestIndex[requestID] = r
                requestIDs.append(requestID)
            }
            requestOfRow.append(r)
            itemIDs.append(id)
            probabilities.append(contentsOf: out)
            labels.append(contentsOf: rowLabels)
            relevance.append(rel)
        }
        progress?(seen)

        // Counting sort of rows by request (stable: input order within a request).
        var groupStart = [Int](repeating: 0, count: requestIDs.count + 1)
        for r in requestOfRow { groupStart[Int(r) + 1] += 1 }
        for r in 0..<requestIDs.count { groupStart[r + 1] += groupStart[r] }
        var fill = groupStart
        var grouped = [Int32](repeating: 0, count: requestOfRow.count)
        for (i, r) in requestOfRow.enumerated() {
            grouped[fill[Int(r)]] = Int32(i)
            fill[Int(r)] += 1
        }
        return ScoredImpressions(
            taskNames: model.taskNames, labelColumns: model.spec.tasks.map(\.label), requestIDs: requestIDs,
            requestOfRow: requestOfRow, itemIDs: itemIDs, probabilities: probabilities, labels: labels,
            relevance: relevanceColumn == nil ? nil : relevance, grouped: grouped, groupStart: groupStart,
            unknownItems: unknown, missingUserColumns: missing, userTowerRuns: towerRuns)
    }

    /// Measures scored impressions under one fusion. See `EvalReport` for the definitions.
    public static func evaluate(_ data: ScoredImpressions, fusion: FusionPolicy, k: Int) -> EvalReport {
        precondition(k >= 1)
        let t = data.taskCount, n = data.rows
        var tasks: [EvalReport.Task] = []
        var column = [Double](repeating: 0, count: n)
        for task in 0..<t {
            for i in 0..<n { column[i] = Double(data.probabilities[i * t + task]) }
            let labels = data.labels
            let positives = (0..<n).reduce(0) { $0 + (labels[$1 * t + task] > 0 ? 1 : 0) }
            let (auc, ll) = column.withUnsafeBufferPointer { p in
                (Metrics.auc(scores: p) { labels[$0 * t + task] > 0 }, Metrics.logLoss(probabilities: p) { labels[$0 * t + task] > 0 })
            }
            tasks.append(.init(name: data.taskNames[task], label: data.labelColumns[task], auc: auc, logLoss: ll, positives: positives))
        }

        var captured = 0.0, total = 0.0
        var listAUCSum = 0.0, listAUCCount = 0
        var ndcgSum = 0.0, ndcgCount = 0
        var withOrders = 0
        var scores: [Double] = [], ids: [Int64] = [], weights: [Double] = [], grades: [Double] = []
        for r in 0..<data.requests {
            data.gather(request: r, fusion: fusion, scores: &scores, ids: &ids, weights: &weights)
            grades.removeAll(keepingCapacity: true)
            for i in data.requestRows(r) {
                var g = 0.0
                for task in 0..<t where data.labels[Int(i) * t + task] > 0 { g += 1 }
                grades.append(g)
            }
            let (c, w) = scores.withUnsafeBufferPointer { s in ids.withUnsafeBufferPointer { id in weights.withUnsafeBufferPointer { wt in
                Metrics.capturedWeight(scores: s, ids: id, weights: wt, k: k)
            } } }
            captured += c
            total += w
            if w > 0 { withOrders += 1 }
            if let a = scores.withUnsafeBufferPointer({ s in weights.withUnsafeBufferPointer { wt in Metrics.auc(scores: s) { wt[$0] > 0 } } }) {
                listAUCSum += a
                listAUCCount += 1
            }
            if let v = Metrics.ndcg(scores: scores, ids: ids, grades: grades, k: k) {
                ndcgSum += v
                ndcgCount += 1
            }
        }
        return EvalReport(
            tasks: tasks, k: k, fusion: fusion,
            weightedRecall: total > 0 ? captured / total : nil,
            listAUC: listAUCCount > 0 ? listAUCSum / Double(listAUCCount) : nil,
            ndcg: ndcgCount > 0 ? ndcgSum / Double(ndcgCount) : nil,
            rows: n, requests: data.requests, requestsWithOrders: withOrders, listAUCRequests: listAUCCount,
            ndcgRequests: ndcgCount, unknownItems: data.unknownItems, capturedOrders: captured, totalOrders: total)
    }

    /// `score` then `evaluate`.
    public func evaluate(data path: String, fusion: FusionPolicy, k: Int) throws(FormatError) -> EvalReport {
        Self.evaluate(try score(data: path), fusion: fusion, k: k)
    }
}

extension ScoredImpressions {
    /// Request r's fused scores, item ids and order weights (last-task labels), in input order.
    public func gather(request r: Int, fusion: FusionPolicy, scores: inout [Double], ids: inout [Int64], weights: inout [Double]) {
        let t = taskCount
        scores.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
        weights.removeAll(keepingCapacity: true)
        for i32 in requestRows(r) {
            let i = Int(i32)
            scores.append(fused(row: i, fusion))
            ids.append(itemIDs[i])
            weights.append(Double(labels[i * t + t - 1]))
        }
    }
}

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

/// A fusion given on the command line that cannot be used (one line).
public struct FusionTextError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Parsing and printing fusion weights on the command line.
public enum FusionText {
    /// `additive:1,20,0.1` (α, β, γ; γ optional) or `multiplicative:0.8,1` (α, β).
    public static func parse(_ text: String) throws(FusionTextError) -> FusionPolicy {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let formula = FusionFormula(rawValue: parts[0].trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw FusionTextError("--fusion: expected additive:α,β[,γ] or multiplicative:α,β, got \"\(text)\"")
        }
        let numbers = parts[1].split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard (2...3).contains(numbers.count), numbers.allSatisfy({ $0 != nil }) else {
            throw FusionTextError("--fusion: expected 2 or 3 comma-separated numbers after \(formula.rawValue):, got \"\(parts[1])\"")
        }
        let policy = FusionPolicy(formula: formula, alpha: numbers[0]!, beta: numbers[1]!, gamma: numbers.count == 3 ? numbers[2]! : 0)
        do { return try policy.validated() } catch { throw FusionTextError("--fusion: \(error.description)") }
    }

    public static func describe(_ f: FusionPolicy) -> String {
        switch f.formula {
        case .additive:
            return "additive: \(JSONText.plain(f.alpha))·CTR + \(JSONText.plain(f.beta))·CTCVR + \(JSONText.plain(f.gamma))·relevance"
        case .multiplicative:
            return "multiplicative: CTR^\(JSONText.plain(f.alpha)) · CTCVR^\(JSONText.plain(f.beta))"
        }
    }

    /// The `fusion:` block of config/prerank.yaml (SPEC §5) for these weights.
    public static func configYAML(_ f: FusionPolicy) -> String {
        "fusion:\n  formula: \(f.formula.rawValue)\n  alpha: \(JSONText.plain(f.alpha))\n  beta: \(JSONText.plain(f.beta))\n  gamma: \(JSONText.plain(f.gamma))"
    }
}
