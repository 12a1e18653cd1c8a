/// What a reload changes: the config keys whose values differ, by full key path, and which of
/// them only a restart applies. `POST /admin/reload` answers with both lists and the log and
/// `/metrics` carry them, so "reloaded" never hides a key that was not applied (issue #27).
extension PreRankConfig {
    /// Keys a reload cannot apply: the listener, its limits and the worker pool are set up once
    /// at start (docs/OPERATIONS.md "Reloads: what they apply"). `server.tls` stands for turning
    /// TLS on or off and for its profile; a new certificate or key file applies on reload.
    public static let restartOnlyKeys = [
        "server.host", "server.port", "server.max_connections", "server.max_body_bytes", "server.max_buffered_bytes",
        "server.max_header_bytes", "server.header_timeout_ms", "server.body_timeout_ms", "server.idle_timeout_ms",
        "server.workers", "server.queue_depth", "server.tls",
    ]

    /// The key paths whose values differ from `old`, in file order. A section added or removed
    /// lists each of its keys. Paths are the file's (`fusion.beta`, `canary.model.dir`).
    public func changedKeys(from old: PreRankConfig) -> [String] {
        var keys: [String] = []
        func check<T: Equatable>(_ name: String, _ path: KeyPath<PreRankConfig, T>) {
            if self[keyPath: path] != old[keyPath: path] { keys.append(name) }
        }
        check("server.host", \.server.host)
        check("server.port", \.server.port)
        check("server.max_connections", \.server.maxConnections)
        check("server.max_body_bytes", \.server.maxBodyBytes)
        check("server.max_buffered_bytes", \.server.maxBufferedBytes)
        check("server.max_header_bytes", \.server.maxHeaderBytes)
        check("server.header_timeout_ms", \.server.headerTimeoutMs)
        check("server.body_timeout_ms", \.server.bodyTimeoutMs)
        check("server.idle_timeout_ms", \.server.idleTimeoutMs)
        check("server.workers", \.server.workers)
        check("server.queue_depth", \.server.queueDepth)
        check("server.max_candidates", \.server.maxCandidates)
        check("server.tls.cert", \.server.tls?.cert)
        check("server.tls.key", \.server.tls?.key)
        check("server.tls.profile", \.server.tls?.profile)
        check("server.admin_token_file", \.server.adminTokenFile)
        check("model.dir", \.model.dir)
        check("model.index", \.model.index)
        check("model.updates", \.model.updates)
        check("budget_ms", \.budgetMs)
        check("topk.default", \.topk.default)
        check("topk.max", \.topk.max)
        check("topk.rescore_depth", \.topk.rescoreDepth)
        check("topk.allow_whole_index", \.topk.allowWholeIndex)
        check("fusion.formula", \.fusion.formula)
        check("fusion.alpha", \.fusion.alpha)
        check("fusion.beta", \.fusion.beta)
        check("fusion.gamma", \.fusion.gamma)
        check("fusion.allow_request_override", \.fusion.allowRequestOverride)
        check("logging.level", \.logging.level)
        check("logging.format", \.logging.format)
        check("logging.access_sample_rate", \.logging.accessSampleRate)
        check("request.unknown_features", \.request.unknownFeatures)
        check("request_log.dir", \.requestLog?.dir)
        check("request_log.sample_rate", \.requestLog?.sampleRate)
        check("request_log.max_file_bytes", \.requestLog?.maxFileBytes)
        check("request_log.max_file_age_s", \.requestLog?.maxFileAgeSeconds)
        check("request_log.max_files", \.requestLog?.maxFiles)
        check("request_log.candidate_sample", \.requestLog?.candidateSample)
        check("canary.model.dir", \.canary?.model?.dir)
        check("canary.model.index", \.canary?.model?.index)
        check("canary.fusion", \.canary?.fusion)
        check("canary.share", \.canary?.share)
        check("canary.key", \.canary?.key)
        return keys
    }

    /// How a reload to `self` splits: keys applied now (changed since `previous`, the config in
    /// force), and keys that differ from `started` (the config the listener was started with)
    /// and wait for a restart. Comparing the latter with the start, not the previous reload,
    /// keeps reporting a changed port on every reload until the restart actually happens.
    public func reloadPlan(previous: PreRankConfig, started: PreRankConfig) -> (applied: [String], needsRestart: [String]) {
        let needsRestart = server.keysNeedingRestart(comparedWith: started.server)
        let applied = changedKeys(from: previous).filter { key in
            !Self.restartOnlyKeys.contains(key) && key != "server.tls.profile"
                // Started without TLS: certificate and key files wait for the restart too.
                && !(started.server.tls == nil && key.hasPrefix("server.tls."))
        }
        return (applied, needsRestart)
    }
}
