import Catalog
import Foundation
import Fusion
import TwinTower

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
