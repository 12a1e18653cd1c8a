import Foundation
import TwinTower

/// `prerank join-logs`: request-log lines (what the server answered) joined with later feedback
/// (labels) into a `train.csv` in the SPEC §3 shape, one row per (logged request, returned item).
///
/// Output columns: `request_id`, the user-side fields of the feature spec (values from the logged
/// `user` map, else its `query` map), `item_id`, the item-side fields (from `items.csv` by
/// `item_id`; an item feature named `item_id` is that column), `relevance` (the level the request
/// gave the item, 0 when it gave none), and one column per task label (`click,cart,order`), 0 when
/// the labels file has no row for the pair. Labels are made progressive (`order=1` ⇒ `cart=1` ⇒ `click=1`). With
/// `dropped`, `exposed,weight` follow the labels and each request's logged `dropped` sample (candidates
/// scored and not returned, `request_log.candidate_sample`) adds rows with `exposed = 0`, every label 0
/// and `weight = 1/π`; returned items get `exposed = 1`, `weight = 1`. With `servingColumns`,
/// `arm,model_version,rank,score` come last. docs/REQUEST_LOG.md describes the format and the
/// selection-bias caveat (without `dropped`, only returned items become rows).
public enum LogJoin {
    public struct Options: Sendable {
        /// Log files (`.jsonl`, `.jsonl.gz`) or directories holding `requests-*.jsonl[.gz]`.
        public var logs: [String]
        /// CSV `request_id,item_id,<label>…`; nil means every label is 0.
        public var labels: String?
        public var features: FeaturesFile
        /// Catalog CSV `item_id,<item fields>…`; nil leaves item fields empty.
        public var items: String?
        public var out: String
        public var servingColumns: Bool
        /// Add the logged dropped samples as `exposed = 0` rows, and the `exposed,weight` columns.
        public var dropped: Bool

        public init(logs: [String], labels: String?, features: FeaturesFile, items: String?, out: String,
                    servingColumns: Bool = false, dropped: Bool = false) {
            self.logs = logs
            self.labels = labels
            self.features = features
            self.items = items
            self.out = out
            self.servingColumns = servingColumns
            self.dropped = dropped
        }
    }

    public struct Summary: Sendable, Equatable {
        public var files = 0
        public var lines = 0
        /// Lines that are not JSON objects of the request-log schema (skipped).
        public var badLines = 0
        /// Requests logged without a request_id (no label can name them; skipped).
        public var withoutRequestID = 0
        /// Later lines repeating a request_id already joined (client retries; skipped).
        public var duplicateRequests = 0
        public var requests = 0
        public var rows = 0
        /// Of `rows`, those from `dropped` samples (`exposed = 0`; only with `Options.dropped`).
        public var droppedRows = 0
        /// Requests whose `dropped` key was missing or malformed (no dropped rows for them) while
        /// `Options.dropped` asked for them: logged without `candidate_sample`, or nothing dropped.
        public var requestsWithoutDropped = 0
        /// Rows whose item_id is not in items.csv (item fields left empty).
        public var itemsNotInCatalog = 0
        /// Label rows that matched a written row / that did not (item not returned, or request
        /// not logged or not sampled).
        public var labelsMatched = 0
        public var labelsUnmatched = 0
        /// Label rows where a later-stage 1 forced earlier stages to 1.
        public var labelsMadeProgressive = 0
        public init() {}
    }

    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    public static func run(_ options: Options) throws(Error) -> Summary {
        var summary = Summary()
        let spec = options.features
        // `item_id` is usually also an item feature: its column doubles as the feature's.
        let userFields = spec.features.filter { $0.side == .user && $0.name != "request_id" && $0.name != "item_id" }
        let itemFields = spec.features.filter { $0.side == .item && $0.name != "item_id" }
        let labelNames = spec.tasks.map(\.label)

        var labels = try loadLabels(options.labels, labelNames: labelNames, summary: &summary)
        let catalog = try loadItems(options.items, fields: itemFields.map(\.name))
        let files = try listLogFiles(options.logs)
        summary.files = files.count

        var header = ["request_id"] + userFields.map(\.name) + ["item_id"] + itemFields.map(\.name) + ["relevance"] + labelNames
        if options.dropped { header += ["exposed", "weight"] }
        if options.servingColumns { header += ["arm", "model_version", "rank", "score"] }
        let tmp = options.out + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let out = FileHandle(forWritingAtPath: tmp) else {
            throw Error("cannot create \(tmp)")
        }
        var buffer = csvLine(header)
        func flushBuffer(force: Bool) throws(Error) {
            guard force || buffer.utf8.count >= 1 << 20 else { return }
            do { try out.write(contentsOf: Data(buffer.utf8)) } catch { throw Error("write \(tmp): \(error)") }
            buffer = ""
        }

        var seen = Set<String>()
        let emptyItem = [String](repeating: "", count: itemFields.count)
        for file in files {
            let data = try readLogFile(file)
            try forEachLine(data) { line throws(Error) in
                summary.lines += 1
                guard let obj = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any],
                      let items = obj["items"] as? [Any] else {
                    summary.badLines += 1
                    return
                }
                guard let requestID = obj["request_id"] as? String else {
                    summary.withoutRequestID += 1
                    return
                }
                guard seen.insert(requestID).inserted else {
                    summary.duplicateRequests += 1
                    return
                }
                summary.requests += 1
                let user = obj["user"] as? [String: Any] ?? [:]
                let query = obj["query"] as? [String: Any] ?? [:]
                let userCells = userFields.map { f in cell(user[f.name] ?? query[f.name], kind: f.kind) }
                // Relevance per candidate id (first occurrence, as the server scores duplicates once).
                var relevance: [Int64: String] = [:]
                if let cands = obj["candidates"] as? [Any], let levels = obj["relevance"] as? [Any] {
                    for (c, r) in zip(cands, levels) {
                        guard let id = (c as? NSNumber)?.int64Value, relevance[id] == nil else { continue }
                        relevance[id] = cell(r, kind: .dense)
                    }
                }
                let arm = obj["arm"] as? String ?? ""
                let version = obj["model_version"] as? String ?? ""
                func itemCells(_ id: Int64) -> [String] {
                    if let c = catalog?[id] { return c }
                    if catalog != nil { summary.itemsNotInCatalog += 1 }
                    return emptyItem
                }
                for (rank, raw) in items.enumerated() {
                    guard let item = raw as? [String: Any], let idNumber = item["id"] as? NSNumber else {
                        summary.badLines += 1
                        continue
                    }
                    let id = idNumber.int64Value
                    var labelCells = [String](repeating: "0", count: labelNames.count)
                    if let l = labels.removeValue(forKey: LabelKey(requestID: requestID, itemID: id)) {
                        labelCells = l.map { $0 ? "1" : "0" }
                        summary.labelsMatched += 1
                    }
                    var row = [requestID] + userCells + [String(id)] + itemCells(id) + [relevance[id] ?? "0"] + labelCells
                    if options.dropped { row += ["1", "1"] }
                    if options.servingColumns {
                        row += [arm, version, String(rank + 1), cell(item["score"], kind: .dense)]
                    }
                    buffer += csvLine(row)
                    summary.rows += 1
                    try flushBuffer(force: false)
                }
                guard options.dropped else { return }
                // The dropped sample: never shown, so every label is 0 (a label row naming one of
                // these pairs stays unmatched), weight 1/π (π = the logged inclusion probability).
                guard let dropped = obj["dropped"] as? [String: Any], let inclusion = (dropped["inclusion"] as? NSNumber)?.doubleValue,
                      inclusion > 0, inclusion <= 1, let sampled = dropped["items"] as? [Any] else {
                    summary.requestsWithoutDropped += 1
                    return
                }
                let weight = weightCell(1 / inclusion)
                let zeros = [String](repeating: "0", count: labelNames.count)
                for raw in sampled {
                    guard let item = raw as? [String: Any], let id = (item["id"] as? NSNumber)?.int64Value else {
                        summary.badLines += 1
                        continue
                    }
                    var row = [requestID] + userCells + [String(id)] + itemCells(id) + [relevance[id] ?? "0"] + zeros + ["0", weight]
                    if options.servingColumns { row += [arm, version, "", ""] }
                    buffer += csvLine(row)
                    summary.rows += 1
                    summary.droppedRows += 1
                    try flushBuffer(force: false)
                }
            }
        }
        try flushBuffer(force: true)
        do { try out.synchronize(); try out.close() } catch { throw Error("write \(tmp): \(error)") }
        guard rename(tmp, options.out) == 0 else { throw Error("rename \(tmp) → \(options.out): \(String(cString: strerror(errno)))") }
        summary.labelsUnmatched = labels.count
        return summary
    }

    // MARK: inputs

    struct LabelKey: Hashable {
        var requestID: String
        var itemID: Int64
    }

    /// Label rows by (request_id, item_id); a pair given twice takes the OR of its rows.
    static func loadLabels(_ path: String?, labelNames: [String], summary: inout Summary) throws(Error) -> [LabelKey: [Bool]] {
        guard let path else { return [:] }
        var out: [LabelKey: [Bool]] = [:]
        do {
            var reader = try CSVReader(path: path)
            let cols = reader.columns
            guard let rCol = cols["request_id"], let iCol = cols["item_id"] else {
                throw Error("\(path): needs request_id and item_id columns")
            }
            let labelCols = labelNames.map { cols[$0] }
            if labelCols.allSatisfy({ $0 == nil }) {
                throw Error("\(path): none of the label columns \(labelNames.joined(separator: ",")) is present")
            }
            while let row = try reader.next() {
                guard row.count > max(rCol, iCol), let id = CSVFeatures.int64(row[iCol]) else {
                    throw Error("\(path) line \(reader.line): item_id must be an integer")
                }
                var flags: [Bool] = []
                for (name, c) in zip(labelNames, labelCols) {
                    guard let c, c < row.count else { flags.append(false); continue }
                    guard let flag = parseLabel(row[c]) else {
                        // Read as 0 before: a typo silently became a negative example.
                        throw Error("\(path) line \(reader.line): label \(name) must be a number or true/false, not \"\(row[c])\"")
                    }
                    flags.append(flag)
                }
                // Progressive: a later stage implies every earlier one.
                if let last = flags.lastIndex(of: true), flags[0...last].contains(false) {
                    for k in 0...last { flags[k] = true }
                    summary.labelsMadeProgressive += 1
                }
                let key = LabelKey(requestID: row[rCol], itemID: id)
                if let old = out[key] { flags = zip(old, flags).map { $0 || $1 } }
                out[key] = flags
            }
        } catch let e as Error {
            throw e
        } catch {
            throw Error("\(error)")
        }
        return out
    }

    /// A label cell: empty (no label, false), a finite number (> 0 is positive) or true/false in
    /// any case; nil for anything else, which the caller refuses with the file and line.
    static func parseLabel(_ cell: String) -> Bool? {
        let t = cell.trimmingCharacters(in: .whitespaces)
        if t.isEmpty { return false }
        switch t.lowercased() {
        case "true": return true
        case "false": return false
        default:
            guard let v = Double(t), v.isFinite else { return nil }
            return v > 0
        }
    }

    /// item_id → the raw cells of the item fields (empty when a column is missing).
    static func loadItems(_ path: String?, fields: [String]) throws(Error) -> [Int64: [String]]? {
        guard let path else { return nil }
        var out: [Int64: [String]] = [:]
        do {
            var reader = try CSVReader(path: path)
            let cols = reader.columns
            guard let idCol = cols["item_id"] else { throw Error("\(path): needs an item_id column") }
            let fieldCols = fields.map { cols[$0] }
            while let row = try reader.next() {
                guard idCol < row.count, let id = CSVFeatures.int64(row[idCol]) else {
                    throw Error("\(path) line \(reader.line): item_id must be an integer")
                }
                out[id] = fieldCols.map { c in c.flatMap { $0 < row.count ? row[$0] : nil } ?? "" }
            }
        } catch let e as Error {
            throw e
        } catch {
            throw Error("\(error)")
        }
        return out
    }

    /// Files named directly, plus `requests-*.jsonl` / `requests-*.jsonl.gz` in directories,
    /// each group in name order (time, then sequence).
    static func listLogFiles(_ paths: [String]) throws(Error) -> [String] {
        var out: [String] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw Error("\(path): no such file or directory") }
            if isDir.boolValue {
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
                    .filter { $0.hasPrefix("requests-") && ($0.hasSuffix(".jsonl") || $0.hasSuffix(".jsonl.gz")) }
                    .sorted { sortKey($0) < sortKey($1) }
                out += names.map { (path as NSString).appendingPathComponent($0) }
            } else {
                out.append(path)
            }
        }
        return out
    }

    /// A plain file and its compressed twin sort alike, so a directory copied mid-rotation reads in order.
    private static func sortKey(_ name: String) -> String {
        name.hasSuffix(".gz") ? String(name.dropLast(3)) : name
    }

    static func readLogFile(_ path: String) throws(Error) -> Data {
        if path.hasSuffix(".gz") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["gzip", "-dc", "--", path]
            let pipe = Pipe()
            p.standardOutput = pipe
            do { try p.run() } catch { throw Error("cannot run gzip for \(path): \(error)") }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw Error("gzip -dc \(path) failed (status \(p.terminationStatus))") }
            return data
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw Error("cannot read \(path)") }
        return data
    }

    static func forEachLine(_ data: Data, _ body: (Data) throws(Error) -> Void) throws(Error) {
        var start = data.startIndex
        while start < data.endIndex {
            let end = data[start...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
            if end > start { try body(data[start..<end]) }
            start = end == data.endIndex ? end : data.index(after: end)
        }
    }

    // MARK: output

    /// A logged JSON value as a SPEC §3 CSV cell: multi values joined by `|`, null → empty.
    static func cell(_ value: Any?, kind: FeatureKind) -> String {
        switch value {
        case nil, is NSNull: return ""
        case let s as String: return s
        case let a as [Any]: return a.map { cell($0, kind: .categorical) }.filter { !$0.isEmpty }.joined(separator: "|")
        case let n as NSNumber:
            let d = n.doubleValue
            if kind != .dense, d == d.rounded(), abs(d) < 9.2e18 { return String(n.int64Value) }
            if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
            return d.description
        default: return "\(value!)"
        }
    }

    /// `1/π` with 12 significant digits (`38`, not `38.00000000000001`: π = m/n was itself rounded).
    static func weightCell(_ w: Double) -> String {
        String(format: "%.12g", w)
    }

    static func csvLine(_ cells: [String]) -> String {
        cells.map { c in
            if c.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
                return "\"" + c.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            }
            return c
        }.joined(separator: ",") + "\n"
    }
}
