import ArgumentParser
import Catalog
import PreRankServer

/// `prerank validate-config FILE`: the same check the server runs at start-up and on reload,
/// without starting anything, so a config change can be checked before it is deployed.
struct ValidateConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate-config",
        abstract: "Check a config file the way the server would load it: keys, values, and the files it names.",
        discussion: """
        Checks every key and value, then opens what the server would load at start: the model \
        directories, the indexes (against their model's fingerprint), the admin token file and \
        the TLS files. Prints `ok: FILE` and a summary, or the one-line reason and exits 1. \
        --syntax-only stops after the file itself (for a config whose model is not on this machine).
        """
    )

    @Argument(help: "The YAML config file.") var file: String
    @Flag(help: "Check only the file's keys and values; open no model, index, token or TLS file.") var syntaxOnly = false

    func run() throws {
        let c: PreRankConfig
        do {
            c = try ConfigLoader.load(path: file)
        } catch {
            throw CLIError("\(file): \(error.description)")
        }
        if !syntaxOnly {
            do {
                try ServingSnapshot.check(config: c)
            } catch {
                throw CLIError("\(file): \(error.description)")
            }
            // The update log is written, not read: check the server could create or append to it.
            if let updates = c.model.updates {
                do { try UpdateLog.checkWritable(path: updates) } catch { throw CLIError("\(file): model.updates: \(error.description)") }
            }
        }
        print("ok: \(file)\(syntaxOnly ? " (syntax only; model, index and token files not opened)" : "")")
        for line in Self.summary(c) { print("  " + line) }
    }

    static func summary(_ c: PreRankConfig) -> [String] {
        let s = c.server
        let f = c.fusion
        var lines = [
            "listen \(s.host):\(s.port)\(s.tls == nil ? "" : " (TLS)"), workers \(s.workers == 0 ? "one per core" : String(s.workers)), queue \(s.queueDepth), max connections \(s.maxConnections)",
            "limits: body \(s.maxBodyBytes) B, buffered \(s.maxBufferedBytes) B, head \(s.maxHeaderBytes) B, \(s.maxCandidates) candidates; timeouts head \(s.headerTimeoutMs) ms, body \(s.bodyTimeoutMs) ms, idle \(s.idleTimeoutMs) ms",
            "model \(c.model.dir), index \(c.model.index)" + (c.model.updates.map { ", update log \($0)" } ?? ""),
            "budget \(c.budgetMs) ms, k \(c.topk.default) (max \(c.topk.max))",
            "fusion \(f.formula.rawValue) alpha \(f.alpha) beta \(f.beta) gamma \(f.gamma), request override \(f.allowRequestOverride ? "allowed" : "ignored")",
            "logging \(c.logging.level.rawValue) as \(c.logging.format.rawValue); admin reload \(s.adminTokenFile == nil ? "off" : "on")",
            "unknown request features: \(c.request.unknownFeatures.rawValue)",
        ]
        if let r = c.requestLog { lines.append("request log \(r.dir), sample rate \(r.sampleRate), files up to \(r.maxFileBytes) B or \(r.maxFileAgeSeconds) s") }
        if let k = c.canary {
            let fusion = k.fusion.map { " fusion \($0.formula.rawValue) alpha \($0.alpha) beta \($0.beta) gamma \($0.gamma)" } ?? ""
            lines.append("canary \(k.model?.dir ?? "(primary model)")\(fusion) on \(k.share * 100)% by \(k.key.rawValue)")
        }
        return lines
    }
}
