import ArgumentParser
import Foundation
import Training
import TwinTower

struct JoinLogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join-logs",
        abstract: "Join request-log files with later feedback labels into a train.csv.",
        discussion: """
            Reads request-log files (requests-*.jsonl and .jsonl.gz, or directories of them), a labels \
            CSV (request_id,item_id,click,cart,order; a pair without a row gets 0), the feature spec \
            and the item catalog, and writes train.csv in the SPEC §3 shape with one row per \
            (logged request, returned item): request_id, user-side fields, item_id, item-side fields \
            (from items.csv), relevance, label columns. Only items the server returned were logged: see \
            docs/REQUEST_LOG.md for the selection-bias caveat. With --dropped, the candidates the server \
            scored and did not return, sampled into the log by request_log.candidate_sample, become rows \
            too (labels 0), and the columns exposed (1 returned, 0 dropped) and weight (1, or 1/π for a \
            dropped row) follow the labels: train with `prerank train --weight-column weight`.
            """
    )

    @Option(parsing: .upToNextOption, help: "Request-log files or directories (several allowed).")
    var logs: [String]
    @Option(help: "Labels CSV: request_id,item_id and one column per task label.") var labels: String?
    @Option(help: "features.yaml, or a model directory (its model.json is read).") var features: String
    @Option(help: "Catalog CSV (item_id + item-side fields) for the item columns.") var items: String?
    @Option(help: "Output CSV.") var out: String
    @Flag(help: "Append arm, model_version, rank and score columns after the labels.")
    var servingColumns = false
    @Flag(help: "Add each request's logged dropped sample as rows with labels 0, and the columns exposed,weight (1/π) after the labels.")
    var dropped = false

    func run() throws {
        let spec = try loadSpec()
        let summary: LogJoin.Summary
        do {
            summary = try LogJoin.run(LogJoin.Options(logs: logs, labels: labels, features: spec, items: items,
                                                      out: out, servingColumns: servingColumns, dropped: dropped))
        } catch {
            throw CLIError(error.description)
        }
        let s = summary
        Progress.line("join-logs: \(s.files) files, \(s.lines) lines, \(s.requests) requests -> \(s.rows) rows in \(out)", final: true)
        if dropped {
            Progress.line("join-logs: \(s.rows - s.droppedRows) exposed rows, \(s.droppedRows) dropped rows (exposed=0, weight 1/π); \(s.requestsWithoutDropped) requests logged without a dropped sample", final: true)
        }
        Progress.line("join-logs: labels matched \(s.labelsMatched), unmatched \(s.labelsUnmatched) (item not returned or request not logged), made progressive \(s.labelsMadeProgressive)", final: true)
        if s.badLines + s.withoutRequestID + s.duplicateRequests + s.itemsNotInCatalog > 0 {
            Progress.line("join-logs: skipped \(s.badLines) bad lines, \(s.withoutRequestID) requests without request_id, \(s.duplicateRequests) repeated request_ids; \(s.itemsNotInCatalog) rows with items not in the catalog", final: true)
        }
    }

    private func loadSpec() throws -> FeaturesFile {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: features, isDirectory: &isDirectory) else {
            throw CLIError("\(features): no such file or directory")
        }
        if isDirectory.boolValue {
            let path = (features as NSString).appendingPathComponent("model.json")
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
            do {
                let spec = try JSONDecoder().decode(ModelSpec.self, from: data)
                return FeaturesFile(tasks: spec.tasks, features: spec.features)
            } catch {
                throw CLIError("\(path): \(error)")
            }
        }
        do { return try FeaturesFile.load(path: features) } catch { throw CLIError(error.description) }
    }
}
