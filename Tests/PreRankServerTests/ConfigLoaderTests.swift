import Foundation
import Fusion
import PreRankServer
import Testing

@Suite struct ConfigLoaderTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Parses a snippet about other keys: the model paths may be left out.
    func lenient(_ yaml: String) throws(ConfigError) -> PreRankConfig {
        try ConfigLoader.parse(yaml: yaml, requireModel: false)
    }

    func error(_ yaml: String) -> ConfigError? {
        do throws(ConfigError) {
            _ = try ConfigLoader.parse(yaml: yaml, requireModel: false)
            return nil
        } catch {
            return error
        }
    }

    /// An empty (or comment-only) file is refused: before issue #27 it passed as "every key at its
    /// default" and a reload with it swapped the production model for `demo/model`.
    @Test func emptyFileIsAnError() throws {
        for text in ["", "\n", "# only a comment\n", "---\n", "~"] {
            for requireModel in [true, false] {
                #expect(throws: ConfigError(key: "", message: "is empty: a config names at least model.dir and model.index (a truncated or unwritten file?)"),
                        "\(text)") { try ConfigLoader.parse(yaml: text, requireModel: requireModel) }
            }
        }
    }

    /// model.dir and model.index have no default: a file without them is refused, naming the key.
    @Test func modelPathsAreRequired() throws {
        for (text, key) in [("server:\nfusion: null\n", "model.dir"), ("model:\n", "model.dir"), ("model: {dir: m}", "model.index"),
                            ("model: {index: i.st}", "model.dir")] {
            do throws(ConfigError) {
                _ = try ConfigLoader.parse(yaml: text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.key == key, "\(text): \(error)")
                #expect(error.description.contains("no default path"), "\(error)")
            }
        }
        let c = try ConfigLoader.parse(yaml: "model: {dir: m, index: i.st}")
        #expect(c.model == PreRankConfig.ModelPaths(dir: "m", index: "i.st"))
        // The shipped config cut short anywhere before its model section is refused too.
        let path = Self.repoRoot.appendingPathComponent("config/prerank.yaml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let modelLine = try #require(lines.firstIndex(where: { $0.hasPrefix("model:") }))
        for n in 0...modelLine + 1 {
            #expect(throws: ConfigError.self, "first \(n) lines") { try ConfigLoader.parse(yaml: lines.prefix(n).joined(separator: "\n")) }
        }
        // Flags may name the model instead (serve --model --index); the check after them still runs.
        var flagged = try ConfigLoader.parse(yaml: "server: {port: 1}", requireModel: false)
        #expect(throws: ConfigError.self) { try flagged.requireModelPaths() }
        flagged.model = .init(dir: "m", index: "i")
        try flagged.requireModelPaths()
    }

    @Test func defaults() throws {
        let c = PreRankConfig()
        #expect(c.model.dir.isEmpty && c.model.index.isEmpty)
        #expect(c.server.host == "127.0.0.1" && c.server.port == 8080 && c.server.maxBodyBytes == 8 << 20)
        #expect(c.server.maxHeaderBytes == 16384 && c.server.maxConnections == 1024 && c.server.maxCandidates == 100_000)
        #expect(c.server.maxBufferedBytes == 256 << 20)
        #expect(c.budgetMs == 150 && c.topk.default == 100 && c.topk.max == 1000)
        #expect(c.fusion.policy == FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0) && !c.fusion.allowRequestOverride)
        #expect(c.logging.level == .info && c.logging.format == .text)
        #expect(c.server.tls == nil && c.server.adminTokenFile == nil && c.requestLog == nil && c.canary == nil)
    }

    @Test func partialFileChangesOnlyItsKeys() throws {
        let c = try lenient("""
        server:
          port: 9090
        fusion:
          beta: 25
          formula: multiplicative
        logging: {format: json}
        budget_ms: 80.5
        """)
        var expected = PreRankConfig()
        expected.server.port = 9090
        expected.fusion.beta = 25
        expected.fusion.formula = .multiplicative
        expected.logging.format = .json
        expected.budgetMs = 80.5
        #expect(c == expected)
    }

    @Test func portZeroPicksAFreePortAndServeFlagsFollowTheKeysRules() throws {
        #expect(try lenient("server: {port: 0}").server.port == 0)
        #expect(try lenient("server: {port: 65535}").server.port == 65535)
        #expect(error("server: {port: 65536}")?.description == "server.port must be 0...65535 (line 1)")
        for (port, ok) in [(0, true), (1, true), (65535, true), (-1, false), (65536, false)] {
            #expect((try? ConfigLoader.checkServeFlags(host: nil, port: port, modelDir: nil, index: nil)) != nil || !ok, "\(port)")
        }
        do throws(ConfigError) {
            try ConfigLoader.checkServeFlags(host: nil, port: 70000, modelDir: nil, index: nil)
            Issue.record("--port 70000 was accepted")
        } catch {
            #expect(error.description == "--port must be 0...65535 (0 picks a free port), not 70000")
        }
        for (host, model, index, flag) in [("", nil, nil, "--host"), (nil, "", nil, "--model"), (nil, nil, "", "--index")] as [(String?, String?, String?, String)] {
            #expect(throws: ConfigError(key: flag, message: "must not be empty")) {
                try ConfigLoader.checkServeFlags(host: host, port: nil, modelDir: model, index: index)
            }
        }
    }

    @Test func optionalSections() throws {
        let c = try lenient("""
        server:
          tls: {cert: a.crt, key: a.key}
          admin_token_file: token
        request_log: {}
        canary:
          model: {dir: m2, index: i2.safetensors}
          key: user_id
        """)
        #expect(c.server.tls == PreRankConfig.TLS(cert: "a.crt", key: "a.key"))
        #expect(c.server.adminTokenFile == "token")
        #expect(c.requestLog == PreRankConfig.RequestLog())
        #expect(c.canary == PreRankConfig.Canary(model: .init(dir: "m2", index: "i2.safetensors"), share: 0.05, key: .userID))
    }

    /// Each class of error names its key; the one-line description starts with the key path.
    @Test(arguments: [
        // unknown keys, at every level
        ("serve: {}", "serve"),
        ("server: {prot: 80}", "server.prot"),
        ("server: {tls: {cert: a, key: b, chain: c}}", "server.tls.chain"),
        ("canary: {model: {dir: a, index: b, extra: 1}}", "canary.model.extra"),
        ("fusion: {delta: 1}", "fusion.delta"),
        ("topk: {min: 1}", "topk.min"),
        // wrong types
        ("server: {port: \"8080\"}", "server.port"),
        ("server: {port: 80.5}", "server.port"),
        ("server: [1, 2]", "server"),
        ("server: 5", "server"),
        ("fusion: {alpha: abc}", "fusion.alpha"),
        ("fusion: {allow_request_override: maybe}", "fusion.allow_request_override"),
        ("server: {host: [a]}", "server.host"),
        ("model: {dir: {a: 1}}", "model.dir"),
        ("- a\n- b", ""),
        // out of range
        ("server: {port: -1}", "server.port"),
        ("server: {port: 70000}", "server.port"),
        ("server: {workers: -1}", "server.workers"),
        ("server: {max_body_bytes: 0}", "server.max_body_bytes"),
        ("server: {max_buffered_bytes: 1000}", "server.max_buffered_bytes"),
        ("server: {max_buffered_bytes: \"256MiB\"}", "server.max_buffered_bytes"),
        ("server: {max_body_bytes: 33554432, max_buffered_bytes: 16777216}", "server.max_buffered_bytes"),
        ("budget_ms: 0", "budget_ms"),
        ("budget_ms: -5", "budget_ms"),
        ("topk: {default: 0}", "topk.default"),
        ("topk: {default: 2000}", "topk.default"),
        ("topk: {max: 10, default: 50}", "topk.default"),
        ("topk: {rescore_depth: 0}", "topk.rescore_depth"),
        ("canary: {fusion: {formula: multiplicative, gamma: 0.1}}", "canary.fusion.gamma"),
        ("canary: {fusion: {allow_request_override: true}}", "canary.fusion.allow_request_override"),
        ("topk: {allow_whole_index: 1}", "topk.allow_whole_index"),
        ("logging: {access_sample_rate: 2}", "logging.access_sample_rate"),
        ("topk: {rescore_depth: 1.5}", "topk.rescore_depth"),
        ("fusion: {alpha: .nan}", "fusion.alpha"),
        ("fusion: {beta: .inf}", "fusion.beta"),
        ("fusion: {formula: multiplicative, gamma: 0.1}", "fusion.gamma"),
        ("fusion: {formula: product}", "fusion.formula"),
        ("logging: {level: verbose}", "logging.level"),
        ("logging: {format: xml}", "logging.format"),
        ("request_log: {sample_rate: 1.5}", "request_log.sample_rate"),
        ("canary: {model: {dir: a, index: b}, share: 2}", "canary.share"),
        ("canary: {model: {dir: a, index: b}, key: session}", "canary.key"),
        // required inside optional sections
        ("server: {tls: {cert: a}}", "server.tls.key"),
        ("canary: {share: 0.1}", "canary.model"),
        ("canary: {model: {dir: a}}", "canary.model.index"),
        ("model: {dir: \"\"}", "model.dir"),
        // duplicates and syntax
        ("server:\n  port: 1\n  port: 2", "server.port"),
        ("server: {port: 1", ""),
        ("server:\n  port: 1\n bad", ""),
    ])
    func errorsNameTheKey(yaml: String, key: String) {
        guard let e = error(yaml) else {
            Issue.record("accepted: \(yaml)")
            return
        }
        #expect(e.key == key, "\(yaml): \(e)")
        #expect(!e.description.contains("\n"))
        if !key.isEmpty { #expect(e.description.hasPrefix(key + " "), "\(e)") }
    }

    @Test func messages() {
        #expect(error("server: {port: 70000}")?.description == "server.port must be 0...65535 (line 1)")
        #expect(error("fusion:\n  alpha: .nan")?.description == "fusion.alpha must be a finite number (line 2)")
        #expect(error("fusion: {formula: multiplicative, gamma: 0.1}")?.description
                == "fusion.gamma must be 0 with the multiplicative formula (line 1)")
        #expect(error("server:\n  prot: 80")?.description.hasPrefix("server.prot is not a known key (line 2); known here: host, port,") == true)
        #expect(error("logging: {format: xml}")?.description == "logging.format must be text or json (line 1)")
    }

    /// The shipped config parses, and equals the defaults wherever it says it shows them (all of it).
    @Test func canaryMayBeAFusionOnlyArm() throws {
        let c = try lenient("fusion: {alpha: 2, beta: 30}\ncanary: {fusion: {beta: 5}, share: 0.5}")
        #expect(c.canary?.model == nil && c.canary?.share == 0.5)
        #expect(c.canary?.fusion?.policy == FusionPolicy(formula: .additive, alpha: 2, beta: 5, gamma: 0))
    }

    @Test func restartKeysAreExactlyTheListenerOnes() throws {
        let old = PreRankConfig().server
        var new = old
        new.adminTokenFile = "/x"
        new.maxCandidates = 5
        #expect(new.keysNeedingRestart(comparedWith: old).isEmpty)
        new.workers = 3
        new.port = 9
        #expect(new.keysNeedingRestart(comparedWith: old) == ["server.port", "server.workers"])
    }

    @Test func rescoreDepthIsOptional() throws {
        #expect(try lenient("topk: {default: 10}").topk.rescoreDepth == nil)
        #expect(try lenient("topk: {rescore_depth: 1000}").topk.rescoreDepth == 1000)
        #expect(try lenient("topk: {rescore_depth: null}").topk.rescoreDepth == nil)
    }

    @Test func shippedConfigIsTheDefaults() throws {
        let path = Self.repoRoot.appendingPathComponent("config/prerank.yaml").path
        var defaults = PreRankConfig()
        defaults.model = .init(dir: "demo/model", index: "demo/index.safetensors")
        #expect(try ConfigLoader.load(path: path) == defaults)
        // Its commented-out optional sections are valid too, once uncommented.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let uncommented = text.split(separator: "\n", omittingEmptySubsequences: false).map(Self.uncomment)
        let full = try ConfigLoader.parse(yaml: uncommented.joined(separator: "\n"))
        #expect(full.server.tls == PreRankConfig.TLS(cert: "/etc/prerank/tls.crt", key: "/etc/prerank/tls.key"))
        #expect(full.server.adminTokenFile == "/etc/prerank/admin.token")
        #expect(full.requestLog == PreRankConfig.RequestLog())
        #expect(full.canary?.share == 0.05 && full.canary?.key == .requestID)
        #expect(full.model.updates == "/var/lib/prerank/updates.log")
        #expect(full.canary?.fusion?.policy == FusionPolicy(formula: .additive, alpha: 1, beta: 25, gamma: 0))
        // Every key the loader knows is in the file (issue #27: model.updates, canary.fusion and
        // candidate_sample were missing).
        for key in ConfigLoader.knownKeys {
            let leaf = key.split(separator: ".").last.map(String.init) ?? key
            #expect(text.contains(leaf + ":"), "config/prerank.yaml does not show \(key)")
        }
    }

    /// `  #   cert: x` → `    cert: x`: a commented-out key line, uncommented in place.
    static func uncomment(_ line: Substring) -> String {
        let indent = line.prefix(while: { $0 == " " })
        let rest = line.dropFirst(indent.count)
        guard rest.hasPrefix("# ") else { return String(line) }
        let body = rest.dropFirst(2)
        let keyed = body.drop(while: { $0 == " " })
        let key = keyed.prefix(while: { $0.isLetter || $0 == "_" })
        guard !key.isEmpty, keyed.dropFirst(key.count).first == ":" else { return String(line) }
        return String(indent + body)
    }

    @Test func examplesParse() throws {
        let dir = Self.repoRoot.appendingPathComponent("config/examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 2)
        for f in files {
            #expect(throws: Never.self, "\(f)") { try ConfigLoader.load(path: dir.appendingPathComponent(f).path) }
        }
        let minimal = try ConfigLoader.load(path: dir.appendingPathComponent("minimal.yaml").path)
        var expected = PreRankConfig()
        expected.model = .init(dir: "/var/lib/prerank/model", index: "/var/lib/prerank/index.safetensors")
        #expect(minimal == expected)
    }

    @Test func missingFile() {
        do throws(ConfigError) {
            _ = try ConfigLoader.load(path: "/nonexistent/prerank.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.key == "" && error.description.hasPrefix("cannot be read: "))
        }
    }
}
