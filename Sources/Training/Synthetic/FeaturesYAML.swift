import TwinTower

/// Writes features.yaml (SPEC §3) by hand: `tasks` and `features`, one flow mapping per line, so
/// that any YAML reader (Yams in the server, PyYAML elsewhere) decodes it into `[TaskSpec]` and
/// `[FeatureSpec]`.
public enum FeaturesYAML {
    /// The YAML text; `comment` lines (if any) go first, prefixed with `# `.
    public static func render(tasks: [TaskSpec], features: [FeatureSpec], comment: [String] = []) -> String {
        var out = ""
        for line in comment { out += "# \(line)\n" }
        out += "tasks:\n"
        for t in tasks {
            out += "  - {name: \(scalar(t.name)), label: \(scalar(t.label))}\n"
        }
        out += "features:\n"
        for f in features {
            var line = "  - {name: \(scalar(f.name)), side: \(f.side.rawValue), kind: \(f.kind.rawValue)"
            if let b = f.buckets { line += ", buckets: \(b)" }
            if let d = f.dim { line += ", dim: \(d)" }
            out += line + "}\n"
        }
        return out
    }

    /// A plain scalar when safe (letters, digits, `_`, `-`, `.`, not starting with a digit or
    /// sign and not a YAML keyword), else a double-quoted string.
    static func scalar(_ s: String) -> String {
        let keywords: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"]
        let safe = !s.isEmpty && !keywords.contains(s.lowercased())
            && s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }
            && !("0"..."9").contains(s.unicodeScalars.first!) && s.first != "-" && s.first != "."
        if safe { return s }
        var q = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": q += "\\\""
            case "\\": q += "\\\\"
            case "\n": q += "\\n"
            case "\t": q += "\\t"
            default: q.unicodeScalars.append(ch)
            }
        }
        return q + "\""
    }
}
