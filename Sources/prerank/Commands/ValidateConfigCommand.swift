import ArgumentParser
import PreRankServer

/// `prerank validate-config FILE`: the same check the server runs at start-up and on reload,
/// without starting anything, so a config change can be checked before it is deployed.
struct ValidateConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate-config",
        abstract: "Check a config file: every key known, every value typed and in range.",
        discussion: "Prints `ok: FILE` and a summary of what the file sets, or the one-line reason and exits 1. Model files are not opened."
    )

    @Argument(help: "The YAML config file.") var file: String

    func run() throws {
        let c: PreRankConfig
        do {
            c = try ConfigLoader.load(path: file)
        } catch {
            throw CLIError("\(file): \(error.description)")
        }
        print("ok: \(file)")
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
        ]
        if let r = c.requestLog { lines.append("request log \(r.dir), sample rate \(r.sampleRate)") }
        if let k = c.canary { lines.append("canary \(k.model.dir) on \(k.share * 100)% by \(k.key.rawValue)") }
        return lines
    }
}
