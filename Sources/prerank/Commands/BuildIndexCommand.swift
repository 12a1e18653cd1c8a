import ArgumentParser
import Catalog
import Foundation
import TwinTower

struct BuildIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build-index",
        abstract: "Run the item towers over a catalog and write the memory-mappable item index.",
        discussion: """
            Reads items.csv (item_id plus item-side feature columns; other columns are ignored),
            encodes each item, runs every task's item tower, and writes one safetensors file with
            ids [N] I64, vectors [N, T, d] (F32, F16, or I8 with per-vector scales) and the
            model's fingerprint. The server refuses an index built from another model.
            """
    )

    @Option(help: "Model directory (model.json + weights.safetensors).") var model: String
    @Option(help: "Catalog CSV with an item_id column.") var items: String
    @Option(help: "Output index file.") var out: String
    @Option(help: "Vector storage: f32, f16 or i8.") var dtype: String = "f32"
    @Flag(help: "Also store the F32 rows (tensor rescore) beside f16/i8 vectors: the server rescores the best candidates exactly.")
    var rescore = false
    @Option(help: "An update log (model.updates) to fold over the catalog; the index records its last sequence (updates_sequence) so a server reloading onto it skips what it holds.")
    var updates: String?
    @Flag(help: "With --updates: a missing log file means no changes (default: an error, so a mistyped path does not fold nothing).")
    var allowMissingUpdates = false

    func run() throws {
        guard let dtype = IndexDType(rawValue: dtype.lowercased()) else {
            throw CLIError("--dtype must be f32, f16 or i8, not \(self.dtype)")
        }
        if rescore && dtype == .f32 { throw CLIError("--rescore goes with --dtype f16 or i8 (an f32 index is already exact)") }
        let started = Date()
        do {
            let model = try ModelStore.load(directory: model)
            let changes = try updates.map { try Self.readChanges($0, allowMissing: allowMissingUpdates) } ?? []
            let summary = try IndexBuilder.build(model: model, catalog: items, dtype: dtype, output: out, rescore: rescore,
                                                 changes: changes) { done in
                if done % 65_536 < IndexBuilder.batch || done < IndexBuilder.batch {
                    Progress.line("build-index: \(done) items encoded")
                }
            }
            if !summary.missingColumns.isEmpty {
                Progress.line("build-index: warning: no column for item fields \(summary.missingColumns.joined(separator: ", ")); encoded as missing")
            }
            let seconds = Date().timeIntervalSince(started)
            Progress.line(String(format: "build-index: %d items, %@, %.1f MB in %.1f s -> %@", summary.items,
                                 summary.dtype.rawValue + (rescore ? " + f32 rescore" : ""), Double(summary.bytes) / 1e6, seconds, out), final: true)
        } catch let error as CLIError {
            throw error
        } catch let error as FormatError {
            throw CLIError(error.description)
        }
    }

    /// Every change of an update log, in order (a torn last record is dropped with a warning,
    /// as the server does).
    static func readChanges(_ path: String, allowMissing: Bool) throws -> [CatalogChange] {
        let contents: UpdateLog.Contents
        do { contents = try UpdateLog.read(path: path, allowMissing: allowMissing) } catch { throw CLIError(error.description) }
        if let torn = contents.torn {
            Progress.line("build-index: warning: \(path): dropped a torn last record (\(torn))")
        }
        let changes: [CatalogChange]
        do { changes = try LoggedChange.changes(of: contents.records) } catch {
            throw CLIError("\(path): record \(error.record.sequence) at byte \(error.record.offset) is not a change: \(error.error.message)")
        }
        Progress.line("build-index: \(changes.count) update-log records (last sequence \(contents.lastSequence)) from \(path)")
        return changes
    }
}

