import ArgumentParser
import Catalog
import Foundation
import PreRankServer
import StrictJSON
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

            Replicas: give --url once per replica (each has its own update log). Every batch goes
            to every replica, in the order given, before the next batch; the answer names each
            replica's sequence. A replica refusing a batch stops the run, naming which replicas
            applied it.

            TLS: https:// URLs verify the server's certificate (the system's CAs, or --ca-file)
            and its name. The admin token is never sent in clear beyond this machine: an http://
            URL with a host other than 127.0.0.1, localhost or ::1 is refused (use https://);
            any other host also needs --allow-remote.
            """
    )

    @Option(help: "Server URL, e.g. http://127.0.0.1:8080 (the path is /admin/items); repeat it to send every batch to each replica.")
    var url: [String]
    @Option(help: "File holding the admin bearer token (server.admin_token_file).") var tokenFile: String
    @Option(help: "CSV of rows to upsert (item_id plus item-side columns).") var items: String?
    @Option(help: "File of item ids to delete, one per line.") var delete: String?
    @Option(help: "Rows per request.") var batch: Int = 1000
    @Option(help: "Model directory: type cells by the model's feature kinds instead of by their text.") var model: String?
    @Flag(help: "Allow a server that is not on this machine (https:// only: the token is not sent in clear).") var allowRemote = false
    @Option(help: "PEM file of the CA certificates that sign the servers' certificates (https://; default: the system's).")
    var caFile: String?

    func run() throws {
        guard batch >= 1 else { throw CLIError("--batch must be at least 1") }
        guard items != nil || delete != nil else { throw CLIError("give --items, --delete or both") }
        guard !url.isEmpty else { throw CLIError("give --url (once per replica)") }
        let targets = try url.map { try Self.replica($0, allowRemote: allowRemote) }
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
        let clients = targets.map { AdminClient(host: $0.host, port: $0.port, tls: $0.tls, caFile: caFile) }
        let started = Date()
        var sent = 0
        /// Each replica's last answer.
        var last = [[String: Any]](repeating: [:], count: targets.count)

        func post(_ change: CatalogChange, what: String) throws {
            let body = ItemChangeCodec.encode(change)
            for (r, client) in clients.enumerated() {
                let applied = r == 0 ? "" : "; applied on \(url[0..<r].joined(separator: ", "))"
                let replica = targets.count > 1 ? "\(url[r]): " : ""
                let response: AdminClient.Response
                do {
                    response = try client.send(method: "POST", path: "/admin/items",
                                               headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")], body: body)
                } catch {
                    throw CLIError("\(replica)\(what): \(error) (batches before it are applied\(applied))")
                }
                let text = String(decoding: response.body, as: UTF8.self)
                guard response.status == 200 else {
                    throw CLIError("\(replica)\(what): HTTP \(response.status) \(text) (batches before it are applied, nothing of this one there\(applied))")
                }
                last[r] = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
            }
        }
        func progress(final: Bool = false) {
            let seconds = max(Date().timeIntervalSince(started), 1e-9)
            let sequences = last.map { "\($0["sequence"] ?? "?")" }.joined(separator: ",")
            Progress.line(String(format: "upsert-items: %d rows sent, %.0f rows/s, items %@, sequence %@", sent, Double(sent) / seconds,
                                 "\(last[0]["items"] ?? "?")", sequences), final: final)
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
        // One line of JSON: the rows sent and, per replica in --url order, its items and sequence.
        let replicas = zip(url, last).map { u, a in
            "{\"url\":\(JSONText.quote(u)),\"items\":\(a["items"] ?? "null"),\"sequence\":\(a["sequence"] ?? "null")}"
        }
        print("{\"sent\":\(sent),\"replicas\":[\(replicas.joined(separator: ","))]}")
    }

    /// Where one replica listens.
    struct Replica: Equatable {
        var host: String
        var port: UInt16
        var tls: Bool
    }

    static let loopback: Set<String> = ["127.0.0.1", "localhost", "::1"]

    /// Parses `http[s]://host[:port][/]` (the path is always /admin/items). The token goes in
    /// clear only to this machine; any other host needs --allow-remote, and https.
    static func replica(_ url: String, allowRemote: Bool) throws -> Replica {
        let tls: Bool
        let rest: Substring
        if url.hasPrefix("https://") { (tls, rest) = (true, url.dropFirst(8)) } else if url.hasPrefix("http://") { (tls, rest) = (false, url.dropFirst(7)) } else {
            throw CLIError("--url must start with http:// or https://: \(url)")
        }
        let authority = rest.prefix { $0 != "/" }
        var host = String(authority)
        var port: UInt16 = tls ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw CLIError("bad IPv6 host in \(url)") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = UInt16(after.dropFirst()), p > 0 else { throw CLIError("bad port in \(url)") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = UInt16(authority[authority.index(after: colon)...]), p > 0 else { throw CLIError("bad port in \(url)") }
            port = p
        }
        guard !host.isEmpty else { throw CLIError("no host in \(url)") }
        if !loopback.contains(host.lowercased()) {
            guard tls else {
                throw CLIError("refusing to send the admin token in clear to \(host): use https:// for a server that is not on this machine")
            }
            guard allowRemote else {
                throw CLIError("refusing to send changes to \(host): only 127.0.0.1, localhost and ::1 are allowed without --allow-remote")
            }
        }
        return Replica(host: host, port: port, tls: tls)
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
