import Foundation
import Fusion
import Logging
import Yams

/// Reads `config/prerank.yaml` (SPEC §5) into a `PreRankConfig`, checking every key.
///
/// Why walk the YAML node tree instead of `Codable`: the SPEC wants unknown keys and bad values
/// to be errors that name the full key path (`server.prot`), and `YAMLDecoder` ignores unknown
/// keys and reports coding paths in its own words. The walk uses `Yams.compose` (nodes with
/// resolved tags and line marks) rather than `Yams.load` (`Any`), because `load` silently keeps
/// the last of two equal keys and traps on a non-scalar mapping key; nodes let both be errors.
///
/// Rules: a key left out, or given as `null`/empty, takes its default; a section given as
/// `null` is absent. Two exceptions (issue #27): `model.dir` and `model.index` have no default
/// and must be named, and a file with nothing in it is an error, not "all defaults". Integers
/// must be YAML integers (a quoted `"8080"` is a string and an error); floating-point keys take
/// integers or floats, finite only; string keys take any scalar as written.
public enum ConfigLoader {
    /// The keys each section accepts, by section path ("" is the top level): the one list the
    /// loader checks against and `knownKeys` (tests that the shipped config shows every key) reads.
    static let schema: [String: [String]] = [
        "": ["server", "model", "budget_ms", "topk", "fusion", "logging", "request", "request_log", "canary"],
        "request": ["unknown_features"],
        "server": ["host", "port", "max_connections", "max_body_bytes", "max_buffered_bytes", "max_header_bytes",
                   "header_timeout_ms", "body_timeout_ms", "idle_timeout_ms", "workers", "queue_depth", "max_candidates", "tls",
                   "admin_token_file"],
        "server.tls": ["cert", "key", "profile"],
        "model": ["dir", "index", "updates"],
        "topk": ["default", "max", "rescore_depth", "allow_whole_index"],
        "fusion": ["formula", "alpha", "beta", "gamma", "allow_request_override"],
        "logging": ["level", "format", "access_sample_rate"],
        "request_log": ["dir", "sample_rate", "max_file_bytes", "max_file_age_s", "max_files", "candidate_sample"],
        "canary": ["model", "fusion", "share", "key"],
        "canary.model": ["dir", "index"],
        "canary.fusion": ["formula", "alpha", "beta", "gamma"],
    ]

    /// Every key path the loader accepts, sections included (`server`, `server.tls.cert`, ...).
    public static var knownKeys: [String] {
        schema.flatMap { section, keys in keys.map { section.isEmpty ? $0 : section + "." + $0 } }.sorted()
    }

    /// Reads and checks the file at `path`. Errors do not repeat the path: callers prefix it.
    ///
    /// - parameter requireModel: whether `model.dir` and `model.index` must be in the file (the
    ///   default). False only where command-line flags may name them instead (`prerank score`,
    ///   `prerank serve --model --index`); those callers check the result with `requireModelPaths`.
    public static func load(path: String, requireModel: Bool = true) throws(ConfigError) -> PreRankConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            // The caller names the file (`prerank validate-config` prints `FILE: reason`).
            throw ConfigError(key: "", message: "cannot be read: \(error.localizedDescription)")
        }
        return try parse(yaml: text, requireModel: requireModel)
    }

    /// Checks YAML text. An empty text (or only comments) is an error, not the defaults: a file
    /// truncated by a failed write must not turn into a server on default settings (issue #27).
    public static func parse(yaml: String, requireModel: Bool = true) throws(ConfigError) -> PreRankConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let e as YamlError {
            throw ConfigError(key: "", message: "is not valid YAML: " + describe(e))
        } catch {
            throw ConfigError(key: "", message: "is not valid YAML: \(error)")
        }
        guard let root, !Section.isNull(root) else {
            throw ConfigError(key: "", message: "is empty: a config names at least model.dir and model.index (a truncated or unwritten file?)")
        }
        var c = PreRankConfig()
        let top = try Section(root, path: "", known: schema[""] ?? [])

        if let s = try top.section("server") {
            try s.string("host", into: &c.server.host)
            try s.int("port", PreRankConfig.Server.portRange, into: &c.server.port)
            try s.int("max_connections", 1...1_000_000, into: &c.server.maxConnections)
            try s.int("max_body_bytes", 1...(1 << 30), into: &c.server.maxBodyBytes)
            try s.int("max_buffered_bytes", (1 << 20)...(1 << 40), into: &c.server.maxBufferedBytes)
            if c.server.maxBufferedBytes < c.server.maxBodyBytes {
                throw s.error("max_buffered_bytes", "must be at least server.max_body_bytes (\(c.server.maxBodyBytes)), or no body of the largest size could be read")
            }
            try s.int("max_header_bytes", 1024...(1 << 20), into: &c.server.maxHeaderBytes)
            try s.int("header_timeout_ms", 1...3_600_000, into: &c.server.headerTimeoutMs)
            try s.int("body_timeout_ms", 1...3_600_000, into: &c.server.bodyTimeoutMs)
            try s.int("idle_timeout_ms", 1...3_600_000, into: &c.server.idleTimeoutMs)
            try s.int("workers", 0...1024, into: &c.server.workers)
            try s.int("queue_depth", 0...1_000_000, into: &c.server.queueDepth)
            try s.int("max_candidates", 1...10_000_000, into: &c.server.maxCandidates)
            if let t = try s.section("tls") {
                var tls = PreRankConfig.TLS(cert: try t.requiredString("cert"), key: try t.requiredString("key"))
                try t.choice("profile", into: &tls.profile)
                c.server.tls = tls
            }
            c.server.adminTokenFile = try s.optionalString("admin_token_file")
        }
        let modelSection = try top.section("model")
        if requireModel && modelSection == nil {
            throw ConfigError(key: "model.dir", message: "is required: the config must name the model directory and index (there is no default path)")
        }
        if let s = modelSection {
            try s.string("dir", into: &c.model.dir)
            try s.string("index", into: &c.model.index)
            if requireModel { try c.requireModelPaths() }
            if let u = try s.optionalString("updates") {
                guard !u.isEmpty else { throw s.error("updates", "must be a file path") }
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: u, isDirectory: &isDirectory), isDirectory.boolValue {
                    throw s.error("updates", "\(u) is a directory; the update log is a file")
                }
                c.model.updates = u
            }
        }
        try top.double("budget_ms", 0.001...3_600_000, into: &c.budgetMs)
        if let s = try top.section("topk") {
            try s.bool("allow_whole_index", into: &c.topk.allowWholeIndex)
            try s.int("max", 1...1_000_000, into: &c.topk.max)
            try s.int("default", 1...1_000_000, into: &c.topk.default)
            c.topk.rescoreDepth = try s.optionalInt("rescore_depth", 1...10_000_000)
        }
        if c.topk.default > c.topk.max {
            throw ConfigError(key: "topk.default", message: "must be at most topk.max (\(c.topk.max))")
        }
        if let s = try top.section("fusion") {
            try s.choice("formula", into: &c.fusion.formula)
            try s.double("alpha", nil, into: &c.fusion.alpha)
            try s.double("beta", nil, into: &c.fusion.beta)
            try s.double("gamma", nil, into: &c.fusion.gamma)
            try s.bool("allow_request_override", into: &c.fusion.allowRequestOverride)
            // The same rule the engine applies to request overrides (multiplicative needs γ = 0).
            do throws(FusionError) {
                _ = try c.fusion.policy.validated()
            } catch {
                throw s.error(error.field, error.message)
            }
        }
        if let s = try top.section("logging") {
            try s.choice("level", into: &c.logging.level)
            try s.choice("format", into: &c.logging.format)
            try s.double("access_sample_rate", 0...1, into: &c.logging.accessSampleRate)
        }
        if let s = try top.section("request") {
            try s.choice("unknown_features", into: &c.request.unknownFeatures)
        }
        if let s = try top.section("request_log") {
            var r = PreRankConfig.RequestLog()
            try s.string("dir", into: &r.dir)
            try s.double("sample_rate", 0...1, into: &r.sampleRate)
            try s.int("candidate_sample", 0...100_000, into: &r.candidateSample)
            try s.int("max_file_bytes", 4096...(1 << 40), into: &r.maxFileBytes)
            try s.int("max_files", 1...1_000_000, into: &r.maxFiles)
            try s.int("max_file_age_s", 1...(366 * 86400), into: &r.maxFileAgeSeconds)
            c.requestLog = r
        }
        if let s = try top.section("canary") {
            // A canary arm is another model, other fusion weights, or both (a fusion A/B keeps
            // the primary model and changes only the weights).
            var canary = PreRankConfig.Canary()
            if let m = try s.section("model") {
                canary.model = .init(dir: try m.requiredString("dir"), index: try m.requiredString("index"))
            }
            if let f = try s.section("fusion") {
                var fusion = c.fusion  // unspecified weights default to the primary's
                try f.choice("formula", into: &fusion.formula)
                try f.double("alpha", nil, into: &fusion.alpha)
                try f.double("beta", nil, into: &fusion.beta)
                try f.double("gamma", nil, into: &fusion.gamma)
                do throws(FusionError) {
                    _ = try fusion.policy.validated()
                } catch {
                    throw f.error(error.field, error.message)
                }
                canary.fusion = fusion
            }
            guard canary.model != nil || canary.fusion != nil else {
                throw s.error("model", "or canary.fusion is required: a canary differs from the primary by its model, its fusion weights, or both")
            }
            try s.double("share", 0...1, into: &canary.share)
            try s.choice("key", into: &canary.key)
            c.canary = canary
        }
        return c
    }

    /// Checks the `prerank serve` flags that override config keys, with the same rules as the
    /// keys they replace; the error names the flag (`--port`).
    public static func checkServeFlags(host: String?, port: Int?, modelDir: String?, index: String?) throws(ConfigError) {
        if let port, !PreRankConfig.Server.portRange.contains(port) {
            throw ConfigError(key: "--port", message: "must be \(PreRankConfig.Server.portRange.lowerBound)...\(PreRankConfig.Server.portRange.upperBound) (0 picks a free port), not \(port)")
        }
        for (flag, value) in [("--host", host), ("--model", modelDir), ("--index", index)] where value?.isEmpty == true {
            throw ConfigError(key: flag, message: "must not be empty")
        }
    }

    /// One line for a YAML syntax error: where and what, without the snippet Yams appends.
    static func describe(_ e: YamlError) -> String {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return "\(problem) at line \(mark.line), column \(mark.column)" + (context.map { " (\($0.text))" } ?? "")
        default:
            return String(describing: e).split(whereSeparator: \.isNewline).first.map(String.init) ?? "unreadable"
        }
    }
}

/// A string-valued enum a config key chooses from.
protocol ConfigChoice: RawRepresentable<String>, CaseIterable {}
extension FusionFormula: ConfigChoice {}
extension Logger.Level: ConfigChoice {}
extension LineLogHandler.Format: ConfigChoice {
    // Written out: CaseIterable is synthesised only in the file that declares the enum.
    public static var allCases: [Self] { [.text, .json] }
}
extension PreRankConfig.Canary.Key: ConfigChoice {}
extension PreRankConfig.TLSProfile: ConfigChoice {}
extension PreRankConfig.UnknownFeatures: ConfigChoice {}

/// One YAML mapping of the config, at a key path: typed reads of its keys, each error naming
/// the full path of the key and its line.
private struct Section {
    let path: String
    private var values: [String: Node] = [:]

    /// `node` must be a mapping (or absent/null: an empty section) whose keys are all in `known`.
    init(_ node: Node?, path: String, known: [String]) throws(ConfigError) {
        self.path = path
        guard let node, !Self.isNull(node) else { return }
        guard let mapping = node.mapping else {
            throw ConfigError(key: path, message: path.isEmpty ? "the file must be a YAML mapping of sections" + Self.line(node)
                                                                : "must be a mapping" + Self.line(node))
        }
        for (k, v) in mapping {
            guard let scalar = k.scalar else { throw ConfigError(key: path, message: "has a key that is not a string" + Self.line(k)) }
            let name = scalar.string
            let full = path.isEmpty ? name : path + "." + name
            guard known.contains(name) else {
                throw ConfigError(key: full, message: "is not a known key" + Self.line(k) + "; known here: " + known.joined(separator: ", "))
            }
            guard values.updateValue(v, forKey: name) == nil else {
                throw ConfigError(key: full, message: "is given twice" + Self.line(k))
            }
        }
    }

    static func isNull(_ node: Node) -> Bool { resolved(node, .null) }

    /// Whether the node's resolved tag (an explicit `!!int`, or what the plain scalar reads as)
    /// is `name`; Yams keeps `Tag.name` internal, so compare its text.
    static func resolved(_ node: Node, _ name: Tag.Name) -> Bool { node.tag.description == name.rawValue }

    static func line(_ node: Node) -> String { node.mark.map { " (line \($0.line))" } ?? "" }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(key: path.isEmpty ? key : path + "." + key, message: message + (values[key].map(Self.line) ?? ""))
    }

    /// The node of `key`, or `nil` when absent or null (the default applies).
    private func node(_ key: String) -> Node? {
        guard let n = values[key], !Self.isNull(n) else { return nil }
        return n
    }

    /// A subsection; its known keys are `ConfigLoader.schema`'s for its path.
    func section(_ key: String) throws(ConfigError) -> Section? {
        guard let n = node(key) else { return nil }
        let full = path.isEmpty ? key : path + "." + key
        return try Section(n, path: full, known: ConfigLoader.schema[full] ?? [])
    }

    func int(_ key: String, _ range: ClosedRange<Int>, into value: inout Int) throws(ConfigError) {
        guard let n = node(key) else { return }
        guard Self.resolved(n, .int), let v = n.int else { throw error(key, "must be an integer") }
        guard range.contains(v) else { throw error(key, "must be \(range.lowerBound)...\(range.upperBound)") }
        value = v
    }

    /// An optional integer: absent or null leaves nil (the computed default applies).
    func optionalInt(_ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard node(key) != nil else { return nil }
        var v = 0
        try int(key, range, into: &v)
        return v
    }

    func double(_ key: String, _ range: ClosedRange<Double>?, into value: inout Double) throws(ConfigError) {
        guard let n = node(key) else { return }
        let v: Double?
        if Self.resolved(n, .int) { v = n.int.map(Double.init) }
        else if Self.resolved(n, .float) { v = n.float }
        else { v = nil }
        guard let v, v.isFinite else { throw error(key, "must be a finite number") }
        if let range, !range.contains(v) {
            throw error(key, "must be \(range.lowerBound.formatted)...\(range.upperBound.formatted)")
        }
        value = v
    }

    func bool(_ key: String, into value: inout Bool) throws(ConfigError) {
        guard let n = node(key) else { return }
        guard Self.resolved(n, .bool), let v = n.bool else { throw error(key, "must be true or false") }
        value = v
    }

    func optionalString(_ key: String) throws(ConfigError) -> String? {
        guard let n = node(key) else { return nil }
        guard let s = n.scalar?.string else { throw error(key, "must be a string") }
        guard !s.isEmpty else { throw error(key, "must not be empty") }
        return s
    }

    func string(_ key: String, into value: inout String) throws(ConfigError) {
        if let s = try optionalString(key) { value = s }
    }

    func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let s = try optionalString(key) else { throw error(key, "is required") }
        return s
    }

    func choice<E: ConfigChoice>(_ key: String, into value: inout E) throws(ConfigError) {
        guard let n = node(key) else { return }
        let names = E.allCases.map(\.rawValue)
        guard let s = n.scalar?.string, let v = E(rawValue: s) else {
            throw error(key, "must be " + (names.count == 2 ? names.joined(separator: " or ") : "one of " + names.joined(separator: ", ")))
        }
        value = v
    }
}

private extension Double {
    /// `1` rather than `1.0` in range messages.
    var formatted: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : description }
}
