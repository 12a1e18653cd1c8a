import Foundation
import TwinTower
import Yams

/// `features.yaml` (SPEC §3): the feature spec and task chain a model is trained on.
///
///     tasks: [{name: ctr, label: click}, {name: atcr, label: cart}, {name: ctcvr, label: order}]
///     features:
///       - {name: user_id, side: user, kind: categorical, buckets: 100003, dim: 16}
///       - {name: age, side: user, kind: dense}
public struct FeaturesFile: Sendable, Equatable {
    public var tasks: [TaskSpec]
    public var features: [FeatureSpec]

    public init(tasks: [TaskSpec], features: [FeatureSpec]) {
        self.tasks = tasks
        self.features = features
    }

    public static func load(path: String) throws(FormatError) -> FeaturesFile {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw FormatError(path, "cannot read (or not UTF-8)")
        }
        return try parse(yaml: text, path: path)
    }

    /// Parsed from the YAML node tree (`Yams.compose`), as `ConfigLoader` does, not `Yams.load`:
    /// `load` traps on a non-scalar mapping key (`{[a]: 1}`) and silently keeps the last of two
    /// equal keys; here both are errors naming the key path and line.
    public static func parse(yaml: String, path: String = "features.yaml") throws(FormatError) -> FeaturesFile {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch { throw FormatError(path, "invalid YAML: \(error)") }
        guard let root else { throw FormatError(path, "must be a mapping with tasks and features") }
        let top = try mapping(root, at: "", path: path, what: "must be a mapping with tasks and features")
        for key in top.keys where key != "tasks" && key != "features" {
            throw FormatError(path, "unknown key \(key)")
        }
        guard let taskNode = top["tasks"], case .sequence(let taskList) = taskNode, !taskList.isEmpty else {
            throw FormatError(path, "tasks must be a non-empty list")
        }
        guard let featureNode = top["features"], case .sequence(let featureList) = featureNode else {
            throw FormatError(path, "features must be a list")
        }
        var tasks: [TaskSpec] = []
        for (i, item) in taskList.enumerated() {
            let m = try mapping(item, at: "tasks[\(i)]", path: path, what: "needs string name and label")
            for key in m.keys where key != "name" && key != "label" {
                throw FormatError(path, "tasks[\(i)].\(key) is not a known key")
            }
            guard let name = scalarString(m["name"]), let label = scalarString(m["label"]) else {
                throw FormatError(path, "tasks[\(i)] needs string name and label")
            }
            tasks.append(TaskSpec(name: name, label: label))
        }
        var features: [FeatureSpec] = []
        for (i, item) in featureList.enumerated() {
            let m = try mapping(item, at: "features[\(i)]", path: path, what: "must be a mapping")
            for key in m.keys where !["name", "side", "kind", "buckets", "dim"].contains(key) {
                throw FormatError(path, "features[\(i)].\(key) is not a known key")
            }
            guard let name = scalarString(m["name"]), !name.isEmpty else { throw FormatError(path, "features[\(i)].name must be a string") }
            guard let sideText = scalarString(m["side"]), let side = Side(rawValue: sideText) else {
                throw FormatError(path, "features[\(i)].side must be user or item")
            }
            guard let kindText = scalarString(m["kind"]), let kind = FeatureKind(rawValue: kindText) else {
                throw FormatError(path, "features[\(i)].kind must be categorical, multi or dense")
            }
            let buckets = integer(m["buckets"])
            let dim = integer(m["dim"])
            if kind != .dense {
                guard let buckets, buckets >= 1 else { throw FormatError(path, "features[\(i)].buckets must be an integer ≥ 1") }
                guard let dim, dim >= 1 else { throw FormatError(path, "features[\(i)].dim must be an integer ≥ 1") }
            }
            features.append(FeatureSpec(name: name, side: side, kind: kind, buckets: kind == .dense ? nil : buckets,
                                        dim: kind == .dense ? nil : dim))
        }
        let spec = ModelSpec(version: "check", tasks: tasks,
                             architecture: Architecture(hidden: [], d: 1, fr: false, lr: false, clamp: false, chain: .additive),
                             features: features)
        try ModelStore.validate(spec, path: path)
        return FeaturesFile(tasks: tasks, features: features)
    }

    /// A mapping node as `[key: value]`; a non-scalar or repeated key is an error with its line.
    private static func mapping(_ node: Node, at key: String, path: String, what: String) throws(FormatError) -> [String: Node] {
        guard case .mapping(let pairs) = node else { throw FormatError(path, key.isEmpty ? what : "\(key) \(what)") }
        var out: [String: Node] = [:]
        for (k, v) in pairs {
            let place = key.isEmpty ? "" : "\(key)."
            guard case .scalar(let s) = k else {
                throw FormatError(path, "line \(k.mark.map { String($0.line) } ?? "?"): a key in \(key.isEmpty ? "the top level" : key) is not a scalar (a mapping or list cannot be a key)")
            }
            if out[s.string] != nil {
                throw FormatError(path, "line \(k.mark.map { String($0.line) } ?? "?"): \(place)\(s.string) is given twice")
            }
            out[s.string] = v
        }
        return out
    }

    /// A YAML string scalar (a number, bool or null where a name belongs is an error, as before).
    private static func scalarString(_ node: Node?) -> String? {
        guard let node, case .scalar(let s) = node, node.tag.description == Tag.Name.str.rawValue else { return nil }
        return s.string
    }

    /// A YAML integer (`16`, not `"16"` or `16.5`).
    private static func integer(_ node: Node?) -> Int? {
        guard let node, case .scalar = node, node.tag.description == Tag.Name.int.rawValue else { return nil }
        return node.int
    }
}
