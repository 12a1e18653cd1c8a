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

    public static func parse(yaml: String, path: String = "features.yaml") throws(FormatError) -> FeaturesFile {
        let root: Any?
        do { root = try Yams.load(yaml: yaml) } catch { throw FormatError(path, "invalid YAML: \(error)") }
        guard let top = root as? [String: Any] else { throw FormatError(path, "must be a mapping with tasks and features") }
        for key in top.keys where key != "tasks" && key != "features" {
            throw FormatError(path, "unknown key \(key)")
        }
        guard let taskList = top["tasks"] as? [Any], !taskList.isEmpty else { throw FormatError(path, "tasks must be a non-empty list") }
        guard let featureList = top["features"] as? [Any] else { throw FormatError(path, "features must be a list") }
        var tasks: [TaskSpec] = []
        for (i, item) in taskList.enumerated() {
            guard let m = item as? [String: Any], let name = m["name"] as? String, let label = m["label"] as? String else {
                throw FormatError(path, "tasks[\(i)] needs string name and label")
            }
            tasks.append(TaskSpec(name: name, label: label))
        }
        var features: [FeatureSpec] = []
        for (i, item) in featureList.enumerated() {
            guard let m = item as? [String: Any] else { throw FormatError(path, "features[\(i)] must be a mapping") }
            for key in m.keys where !["name", "side", "kind", "buckets", "dim"].contains(key) {
                throw FormatError(path, "features[\(i)].\(key) is not a known key")
            }
            guard let name = m["name"] as? String, !name.isEmpty else { throw FormatError(path, "features[\(i)].name must be a string") }
            guard let sideText = m["side"] as? String, let side = Side(rawValue: sideText) else {
                throw FormatError(path, "features[\(i)].side must be user or item")
            }
            guard let kindText = m["kind"] as? String, let kind = FeatureKind(rawValue: kindText) else {
                throw FormatError(path, "features[\(i)].kind must be categorical, multi or dense")
            }
            let buckets = m["buckets"] as? Int
            let dim = m["dim"] as? Int
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
}
