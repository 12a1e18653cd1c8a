import ArgumentParser
import Catalog
import Foundation
import TwinTower

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a model directory or an item index file.",
        discussion: "Checks the files fully (as the server would load them) and prints what they hold."
    )

    @Argument(help: "A model directory or an index .safetensors file.") var path: String
    @Flag(help: "Print JSON instead of text.") var json = false
    @Option(help: "An update log (model.updates): show what it changes over the index (base items, delta items, deleted ids, last sequence).")
    var updates: String?
    @Flag(help: "With --updates: a missing log file means no changes (default: an error).")
    var allowMissingUpdates = false

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CLIError("\(path): no such file or directory")
        }
        do {
            if isDirectory.boolValue {
                try inspectModel()
            } else {
                try inspectIndex()
            }
        } catch let e as FormatError {
            throw CLIError(e.description)
        }
    }

    private func inspectModel() throws(FormatError) {
        let model = try ModelStore.load(directory: path)
        let spec = model.spec
        let embeddingBytes = model.embeddings.values.reduce(0) { $0 + $1.count * 4 }
        let towerParams = [model.userTower, model.itemTower].reduce(0) { acc, tower in
            acc + tower.layers.joined().reduce(0) { $0 + $1.weight.count + $1.bias.count }
        }
        let a = spec.architecture
        if json {
            let obj: [String: Any] = [
                "kind": "model", "version": spec.version, "tasks": model.taskNames,
                "architecture": ["hidden": a.hidden, "d": a.d, "fr": a.fr, "lr": a.lr, "clamp": a.clamp, "chain": a.chain.rawValue],
                "features": spec.features.map { ["name": $0.name, "side": $0.side.rawValue, "kind": $0.kind.rawValue] },
                "embedding_bytes": embeddingBytes, "tower_parameters": towerParams, "fingerprint": model.fingerprint,
            ]
            printJSON(obj)
            return
        }
        print("model \(spec.version)")
        print("  tasks:        \(model.taskNames.joined(separator: " -> "))")
        print("  architecture: hidden \(a.hidden), d \(a.d), fr \(a.fr), lr \(a.lr), clamp \(a.clamp), chain \(a.chain.rawValue)")
        for side in Side.allCases {
            let fields = spec.fields(of: side).map { f in f.kind == .dense ? "\(f.name)(dense)" : "\(f.name)(\(f.kind.rawValue) \(f.buckets ?? 0)x\(f.dim ?? 0))" }
            print("  \(side.rawValue) fields:  \(fields.joined(separator: ", "))  -> input width \(model.tower(side).inputWidth)")
        }
        print(String(format: "  embeddings:   %.1f MB; tower parameters: %d", Double(embeddingBytes) / 1e6, towerParams))
        print("  fingerprint:  \(model.fingerprint)")
    }

    /// The live catalog over `index`: the log's records newer than the index's
    /// `updates_sequence`, folded by id (no model needed: counts, not vectors).
    private func catalogSummary(_ index: ItemIndex) throws -> [String: Any]? {
        guard let updates else { return nil }
        let contents: UpdateLog.Contents
        do { contents = try UpdateLog.read(path: updates, allowMissing: allowMissingUpdates) } catch { throw CLIError(error.description) }
        let base = UInt64(index.metadata["updates_sequence"] ?? "0") ?? 0
        let fold: LoggedChange.Fold
        do { fold = try LoggedChange.fold(contents.records, after: base) } catch {
            throw CLIError("\(updates): record \(error.record.sequence) is not a change: \(error.error.message)")
        }
        let (upserted, deleted, applied) = (fold.upserted, fold.deleted, fold.applied)
        let hidden = upserted.union(deleted).filter { index.row(of: $0) >= 0 }.count
        return ["log": updates, "records": contents.records.count, "records_applied": applied, "base_sequence": base,
                "last_sequence": max(contents.lastSequence, base), "base_items": index.count, "delta_items": upserted.count,
                "deleted_ids": deleted.count, "items": index.count - hidden + upserted.count,
                "torn_tail": contents.torn ?? NSNull()]
    }

    private func inspectIndex() throws {
        let index = try ItemIndex(path: path)
        let ids = index.ids
        let catalog = try catalogSummary(index)
        if json {
            var obj: [String: Any] = [
                "updates_sequence": Int(index.metadata["updates_sequence"] ?? "0") ?? 0,
                "kind": "index", "items": index.count, "tasks": index.tasks, "d": index.d, "dtype": index.dtype.rawValue,
                "vector_bytes": index.vectorBytes, "model_fingerprint": index.fingerprint,
                "rescore": index.rescore == nil ? NSNull() : ["dtype": "f32", "bytes": index.rescoreBytes] as [String: Any],
                "model_version": index.metadata["model_version"] ?? "", "created_at": index.metadata["created_at"] ?? "",
                "min_id": ids.first ?? 0, "max_id": ids.last ?? 0,
            ]
            if let catalog { obj["catalog"] = catalog }
            printJSON(obj)
            return
        }
        print("index \(path)")
        print("  items:       \(index.count) (ids \(ids.first ?? 0) ... \(ids.last ?? 0))")
        print("  vectors:     [\(index.count), \(index.taskCount), \(index.d)] \(index.dtype.rawValue), \(String(format: "%.1f MB", Double(index.vectorBytes) / 1e6))")
        if index.rescore != nil {
            print("  rescore:     [\(index.count), \(index.taskCount), \(index.d)] f32, \(String(format: "%.1f MB", Double(index.rescoreBytes) / 1e6)) (the best candidates of a scan are rescored from these)")
        } else {
            print("  rescore:     none")
        }
        print("  tasks:       \(index.tasks.joined(separator: " -> "))")
        print("  model:       \(index.metadata["model_version"] ?? "?") fingerprint \(index.fingerprint)")
        print("  created at:  \(index.metadata["created_at"] ?? "?")")
        print("  updates:     folded up to sequence \(index.metadata["updates_sequence"] ?? "0")")
        if let c = catalog {
            print("  live catalog (\(c["log"]!)): \(c["records_applied"]!) of \(c["records"]!) records newer than the base; base items \(c["base_items"]!), delta items \(c["delta_items"]!), deleted ids \(c["deleted_ids"]!), items served \(c["items"]!), last sequence \(c["last_sequence"]!)")
            if let torn = c["torn_tail"] as? String { print("  warning: torn last record dropped (\(torn))") }
        }
    }

    private func printJSON(_ obj: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]),
           let text = String(data: data, encoding: .utf8) {
            print(text)
        }
    }
}
