import ArgumentParser
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
        } catch {
            throw CLIError(error.description)  // the do block throws only FormatError
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

    private func inspectIndex() throws(FormatError) {
        let index = try ItemIndex(path: path)
        let ids = index.ids
        if json {
            printJSON([
                "kind": "index", "items": index.count, "tasks": index.tasks, "d": index.d, "dtype": index.dtype.rawValue,
                "vector_bytes": index.vectorBytes, "model_fingerprint": index.fingerprint,
                "rescore": index.rescore == nil ? NSNull() : ["dtype": "f32", "bytes": index.rescoreBytes] as [String: Any],
                "model_version": index.metadata["model_version"] ?? "", "created_at": index.metadata["created_at"] ?? "",
                "min_id": ids.first ?? 0, "max_id": ids.last ?? 0,
            ])
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
    }

    private func printJSON(_ obj: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]),
           let text = String(data: data, encoding: .utf8) {
            print(text)
        }
    }
}
