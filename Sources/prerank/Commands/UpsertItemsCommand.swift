import ArgumentParser
import Foundation
import LoadTest
import PreRankServer
import TwinTower

struct UpsertItemsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upsert-items",
        abstract: "Send catalog rows (and deletes) to a running server's live catalog (POST /admin/items).",
        discussion: """
            Reads a CSV like items.csv (item_id plus item-side columns) and posts it in batches,
            each one change the server validates, logs (model.updates) and applies atomically;
            then the ids of --delete (one per line). Stops at the first refused batch and names
            its lines: batches before it are applied and durable, nothing of it is.

            Cells are typed as JSON the way a request feature would be: a cell with '|' is an
            array of strings, an integer cell an integer, another number a number, anything else
            a string (categorical 42 and "42" hash alike). With --model the model's feature kinds
            type the cells exactly as build-index reads them.
            """
    )

    @Option(help: "Server URL, e.g. http://127.0.0.1:8080 (the path is /admin/items).") var url: String
    @Option(help: "File holding the admin bearer token (server.admin_token_file).") var tokenFile: String
    @Option(help: "CSV of rows to upsert (item_id plus item-side columns).") var items: String?
    @Option(help: "File of item ids to delete, one per line.") var delete: String?
    @Option(help: "Rows per request.") var batch: Int = 1000
    @Option(help: "Model directory: type cells by the model's feature kinds instead of by their text.") var model: String?
    @Flag(help: "Allow a server that is not on this machine.") var allowRemote = false

    func run() throws {
        guard batch >= 1 else { throw CLIError("--batch must be at least 1") }
        guard items != nil || delete != nil else { throw CLIError("give --items, --delete or both") }
        var target: LoadTarget
        do { target = try LoadTarget.parse(url, allowRemote: allowRemote) } catch { throw CLIError(error.message) }
        target.path = "/admin/items"
        guard let raw = FileManager.default.contents(atPath: tokenFile), let token = String(data: raw, encoding: .utf8)?
            .trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            throw CLIError("cannot read a token from \(tokenFile)")
        }
        guard !token.contains(where: { $0.isNewline || $0 == "\r" }) else {
            throw CLIError("\(tokenFile) must hold the token on one line")
        }
        var kinds: [String: FeatureKind]?
        if let model {
            do {
                let m = try ModelStore.load(directory: model)
                kinds = Dictionary(uniqueKeysWithValues: m.spec.fields(of: .item).map { ($0.name, $0.kind) })
            } catch { throw CLIError(error.description) }
        }
        let connection = HTTPConnection(target: target, timeoutMs: 60_000)
        let started = Date()
        var sent = 0
        var last: [String: Any] = [:]

        func post(_ change: CatalogChange, what: String) throws {
            let body = ItemChangeCodec.encode(change)
            let head = Array(("POST /admin/items HTTP/1.1\r\nHost: \(target.hostHeader)\r\nAuthorization: Bearer \(token)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n").utf8)
            let response: HTTPConnection.Response
            do { response = try connection.exchange(head: head, body: body) } catch {
                throw CLIError("\(what): \(error) (batches before it are applied)")
            }
            if response.closes { connection.close() }
            let text = String(decoding: response.body, as: UTF8.self)
            guard response.status == 200 else {
                throw CLIError("\(what): HTTP \(response.status) \(text) (batches before it are applied, nothing of this one)")
            }
            last = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        }
        func progress(final: Bool = false) {
            let seconds = max(Date().timeIntervalSince(started), 1e-9)
            Progress.line(String(format: "upsert-items: %d rows sent, %.0f rows/s, items %@, sequence %@", sent, Double(sent) / seconds,
                                 "\(last["items"] ?? "?")", "\(last["sequence"] ?? "?")"), final: final)
        }

        if let items {
            var reader: CSVReader
            do { reader = try CSVReader(path: items) } catch { throw CLIError(error.description) }
            guard let idColumn = reader.columns["item_id"] else { throw CLIError("\(items): no item_id column in the header") }
            let header = reader.header
            var pending: [CatalogChange.Upsert] = []
            var firstLine = 0
            while true {
                let cells: [String]?
                do { cells = try reader.next() } catch { throw CLIError(error.description) }
                if let cells {
                    let line = reader.line
                    guard cells.count == header.count else { throw CLIError("\(items) line \(line): \(cells.count) columns, header has \(header.count)") }
                    guard let id = CSVFeatures.int64(cells[idColumn]) else {
                        throw CLIError("\(items) line \(line): item_id \"\(cells[idColumn])\" is not an integer")
                    }
                    var row = FeatureRow()
                    for (i, name) in header.enumerated() where i != idColumn {
                        if let kinds {
                            guard let kind = kinds[name] else { continue }
                            do { row[name] = try CSVFeatures.value(cells[i], kind: kind, column: name, line: line) } catch {
                                throw CLIError("\(items): \(error.description)")
                            }
                        } else if !cells[i].isEmpty {
                            row[name] = Self.infer(cells[i])
                        }
                    }
                    if pending.isEmpty { firstLine = line }
                    pending.append(.init(id: id, row: row))
                }
                if pending.count == batch || (cells == nil && !pending.isEmpty) {
                    try post(CatalogChange(upserts: pending, deletes: []), what: "\(items) lines \(firstLine)-\(firstLine + pending.count - 1)")
                    sent += pending.count
                    pending = []
                    progress()
                }
                if cells == nil { break }
            }
        }
        if let delete {
            guard let text = try? String(contentsOfFile: delete, encoding: .utf8) else { throw CLIError("cannot read \(delete)") }
            var ids: [Int64] = []
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if t.isEmpty || t.hasPrefix("#") { continue }
                guard let id = Int64(t) else { throw CLIError("\(delete) line \(n + 1): \"\(t)\" is not an integer id") }
                ids.append(id)
            }
            for start in stride(from: 0, to: ids.count, by: batch) {
                let part = Array(ids[start..<min(ids.count, start + batch)])
                try post(CatalogChange(upserts: [], deletes: part), what: "\(delete) ids \(start + 1)-\(start + part.count)")
                sent += part.count
                progress()
            }
        }
        progress(final: true)
        print("{\"sent\":\(sent),\"items\":\(last["items"] ?? "null"),\"sequence\":\(last["sequence"] ?? "null")}")
    }

    /// A cell typed by its text (see the discussion).
    static func infer(_ cell: String) -> FeatureValue {
        if cell.contains("|") {
            return .array(cell.split(separator: "|", omittingEmptySubsequences: true).map { .string(String($0)) })
        }
        if let i = CSVFeatures.int64(cell) { return .integer(i) }
        let t = cell.trimmingCharacters(in: .whitespaces)
        if let d = Double(t), d.isFinite, t.first.map({ $0.isNumber || $0 == "-" || $0 == "." }) == true { return .number(d) }
        return .string(cell)
    }
}
