import Catalog
import Dispatch
import Foundation
import Fusion
import Logging
import StrictJSON
import Synchronization
import TwinTower

/// The prerank HTTP application: routes, admission control, the time budget, hot reload,
/// metrics and logs. The transport (`HTTPServer`) knows nothing of this; this knows nothing of
/// sockets.
public final class PreRankApp: HTTPHandler, @unchecked Sendable {
    // Mutable state is behind mutexes (`snapshot`, `requestLog`); the rest is immutable.
    private let snapshot: Mutex<ServingSnapshot?>
    private let requestLogBox: Mutex<RequestLog?>
    public let metrics: MetricsRegistry
    private let pool: WorkerPool
    private let logger: Logger
    private let configPath: String?
    private let overrides: @Sendable (PreRankConfig) -> PreRankConfig
    private let reloadQueue = DispatchQueue(label: "prerank.reload", qos: .utility)
    /// Completions of triggers waiting for the reload queued next (nil: none queued); a trigger
    /// arriving while one is queued joins it, so a SIGHUP storm runs at most one reload behind
    /// the one in progress.
    private let queuedReload = Mutex<[@Sendable (Result<ReloadOutcome, ReloadError>) -> Void]?>(nil)
    /// The model and index files behind `snapshot`, shared by reloads that leave them unchanged.
    private let cache: ServingCache
    private let parallelism: Int
    /// The config the listener and worker pool were started with: restart-only keys are compared
    /// with it, so every reload reports them until the restart that applies them.
    private let started: PreRankConfig
    /// The update log and the deltas over the served indexes (`POST /admin/items`); used only on
    /// `reloadQueue`, so changes and reloads are serialised.
    private let catalog: LiveCatalog
    /// Unknown request field names already warned about (`request.unknown_features: warn`):
    /// each is logged once, and at most `maxWarnedFeatures` names are kept (a client sending
    /// random keys must not grow memory or the log without bound).
    private let warnedFeatures = Mutex<Set<String>>([])
    static let maxWarnedFeatures = 256
    /// HTTP-layer counters, read at scrape time.
    public var transportStats: (@Sendable () -> HTTPServerStats)?
    /// The serving TLS context (nil for plain HTTP): a reload re-reads `server.tls.cert`/`key`
    /// into it, so a renewed certificate needs no restart.
    public var tlsContext: TLSContext?

    /// - parameters:
    ///   - configPath: re-read on every reload (nil: keep `initial`'s config).
    ///   - overrides: applied to every config read (command-line `--model`, `--index`).
    ///   - cache: the cache `initial` was loaded (and committed) with, so the first reload shares
    ///     its files; a fresh one makes the first reload load everything again.
    ///   - catalog: the live catalog `initial` was attached to (`LiveCatalog.attach`); nil: a
    ///     fresh one, which opens the update log at the first reload.
    public init(initial: ServingSnapshot, configPath: String?, overrides: @escaping @Sendable (PreRankConfig) -> PreRankConfig,
                metrics: MetricsRegistry = MetricsRegistry(), logger: Logger, workers: Int, cache: ServingCache? = nil,
                catalog: LiveCatalog? = nil) {
        self.catalog = catalog ?? LiveCatalog(logger: logger)
        self.snapshot = Mutex(initial)
        self.cache = cache ?? ServingCache(metrics: metrics)
        self.metrics = metrics
        self.configPath = configPath
        self.overrides = overrides
        self.logger = logger
        self.parallelism = workers
        self.started = initial.config
        self.pool = WorkerPool(workers: workers, queueDepth: initial.config.server.queueDepth)
        self.requestLogBox = Mutex(initial.config.requestLog.map { Self.makeRequestLog($0, metrics: metrics) })
        publishModelInfo(initial)
    }

    static func makeRequestLog(_ c: PreRankConfig.RequestLog, metrics: MetricsRegistry) -> RequestLog {
        var config = RequestLogConfig(dir: c.dir, sampleRate: c.sampleRate, maxFileBytes: c.maxFileBytes, maxFiles: c.maxFiles)
        config.maxFileAgeSeconds = Double(c.maxFileAgeSeconds)
        return RequestLog(config: config, metrics: metrics)
    }

    public var current: ServingSnapshot? { snapshot.withLock { $0 } }

    // MARK: routing

    public func transportRefused(status: Int) {
        metrics.recordTransportRefusal(code: status)
    }

    public func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let route = Self.routes[request.path] != nil ? request.path : "other"
        // Captures the receive time, not the request: a queued job must not keep the body alive.
        let receivedAt = request.receivedAt
        let done: @Sendable (HTTPResponse, String?) -> Void = { [metrics] response, arm in
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - receivedAt) / 1e9
            metrics.recordRequest(route: route, code: response.status, seconds: seconds, arm: arm ?? "")
            respond(response)
        }
        guard let methods = Self.routes[request.path] else {
            done(.error(APIError(status: 404, code: "not_found", message: "no route \(request.path)")), nil)
            return
        }
        guard methods.contains(request.method) || (request.method == "HEAD" && methods.contains("GET")) else {
            done(.error(APIError(status: 405, code: "method_not_allowed", message: "\(request.path) takes \(methods.joined(separator: ", "))",
                                 headers: [("Allow", methods.joined(separator: ", "))])), nil)
            return
        }
        switch request.path {
        case "/prerank": prerank(request, done: done)
        case "/healthz": done(.json(200, Array("{\"status\":\"ok\"}".utf8)), nil)
        case "/readyz": done(readiness(), nil)
        case "/metrics": done(metricsResponse(), nil)
        case "/v1/model": done(modelResponse(), nil)
        case "/admin/reload": adminReload(request, done: done)
        case "/admin/items": adminItems(request, done: done)
        default: done(.error(APIError(status: 404, code: "not_found", message: "no route \(request.path)")), nil)
        }
    }

    static let routes: [String: [String]] = [
        "/prerank": ["POST"], "/healthz": ["GET"], "/readyz": ["GET"], "/metrics": ["GET"],
        "/v1/model": ["GET"], "/admin/reload": ["POST"], "/admin/items": ["POST"],
    ]

    // MARK: /prerank

    /// 415 for a body declared as anything but JSON (no Content-Type: taken as JSON, as curl
    /// users expect); shared by every route that reads a JSON body.
    private static func mediaTypeError(_ request: HTTPRequest) -> APIError? {
        guard let type = request.header("content-type") else { return nil }
        let media = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        if media == "application/json" || media.hasSuffix("+json") { return nil }
        return APIError(status: 415, code: "unsupported_media_type", message: "Content-Type must be application/json, not \(type)", field: nil)
    }

    private func prerank(_ request: HTTPRequest, done: @escaping @Sendable (HTTPResponse, String?) -> Void) {
        if let error = Self.mediaTypeError(request) {
            done(.error(error), nil)
            return
        }
        guard let snap = current else {
            done(.error(APIError(status: 503, code: "not_ready", message: "no model loaded", headers: [("Retry-After", "1")])), nil)
            return
        }
        // Decoded here, before admission, so the request's cost in worker slots is known.
        let t0 = DispatchTime.now().uptimeNanoseconds
        let decoded: PreRankRequest
        do {
            decoded = try RequestDecoder.decode(request.body, maxCandidates: snap.options.maxCandidates)
        } catch {
            logger.info("prerank", metadata: ["route": "/prerank", "status": .stringConvertible(error.status), "code": "\(error.code)",
                                              "field": "\(error.field ?? "")"])
            done(.error(error), nil)
            return
        }
        let (bundle, arm) = snap.select(decoded)
        // Metrics and logs name the arm even without a canary (the answer carries `arm` only
        // with one): every request from here on was assigned to an arm.
        let armLabel = arm ?? "primary"
        let parseNanos = DispatchTime.now().uptimeNanoseconds - t0
        let cost = ScoringCost.slots(for: decoded, indexCount: bundle.itemCount, options: snap.options)
        let receivedAt = request.receivedAt
        metrics.adjustInflight(1)
        let accepted = pool.submit(cost: cost) { [self] in
            defer { metrics.adjustInflight(-1) }
            let budget = snap.config.budgetMs
            let waited = Double(DispatchTime.now().uptimeNanoseconds - receivedAt) / 1e6
            if waited >= budget {
                metrics.recordBudgetExpired()
                done(.error(APIError(status: 504, code: "budget_expired", message: "the \(budget) ms budget expired in the queue before scoring began")), armLabel)
                return
            }
            do {
                let outcome = try PreRankService.handle(request: decoded, bundle: bundle, arm: arm, parseNanos: parseNanos,
                                                        options: snap.options(arm: arm), receivedAt: receivedAt, budgetMs: budget)
                let r = outcome.result
                metrics.recordStage("parse", seconds: Double(outcome.parseNanos) / 1e9)
                metrics.recordStage("user_tower", seconds: Double(r.stages.userTower) / 1e9)
                metrics.recordStage("resolve", seconds: Double(r.stages.resolve) / 1e9)
                metrics.recordStage("score", seconds: Double(r.stages.score) / 1e9)
                if r.rescored > 0 { metrics.recordStage("rescore", seconds: Double(r.stages.rescore) / 1e9) }
                metrics.recordStage("topk", seconds: Double(r.stages.topK) / 1e9)
                metrics.recordStage("encode", seconds: Double(outcome.encodeNanos) / 1e9)
                metrics.recordCandidates(r.candidateCount)
                if r.partial { metrics.recordPartial() }
                metrics.recordFeatures(outcome.features)
                if snap.config.request.unknownFeatures == .warn && !outcome.features.ignored.isEmpty {
                    warnOnce(ignored: outcome.features.ignored, modelVersion: outcome.bundle.version)
                }
                logRequest(outcome, arm: armLabel)
                let rate = snap.config.logging.accessSampleRate
                if rate > 0 && (rate >= 1 || Double.random(in: 0..<1) < rate) { logger.info("prerank", metadata: [
                    // Numbers and booleans as such, so a JSON log line types them (took_ms is a number).
                    "route": "/prerank", "status": .stringConvertible(200), "candidates": .stringConvertible(r.candidateCount),
                    "took_ms": .stringConvertible((outcome.response.tookMs * 100).rounded() / 100),
                    "request_id": "\(outcome.request.requestID ?? "")", "arm": "\(armLabel)",
                    "partial": .stringConvertible(r.partial),
                ]) }
                done(.json(200, outcome.body), armLabel)
            } catch let error as APIError {
                if error.status == 504 { metrics.recordBudgetExpired() }
                logger.info("prerank", metadata: ["route": "/prerank", "status": .stringConvertible(error.status), "code": "\(error.code)",
                                                  "field": "\(error.field ?? "")"])
                done(.error(error), armLabel)
            } catch {
                done(.error(APIError(status: 500, code: "internal", message: "\(error)")), armLabel)
            }
        }
        if !accepted {
            metrics.adjustInflight(-1)
            metrics.recordShed()
            done(.error(APIError(status: 503, code: "overloaded", message: "all workers are busy and the queue is full; retry",
                                 headers: [("Retry-After", "1")])), armLabel)
        }
    }

    /// A warning the first time each unknown field name is seen, and one when the set is full.
    private func warnOnce(ignored: [String], modelVersion: String) {
        let (fresh, full) = warnedFeatures.withLock { seen -> ([String], Bool) in
            var fresh: [String] = []
            var full = false
            for path in ignored where !seen.contains(path) {
                guard seen.count < Self.maxWarnedFeatures else { full = true; break }
                seen.insert(path)
                fresh.append(path)
            }
            // Over the cap: one more line saying so (a sentinel no field name can be), then silence.
            let firstTimeFull = full && seen.insert("\u{0}full").inserted
            return (fresh, firstTimeFull)
        }
        for path in fresh {
            logger.warning("request field is not a feature of the model and is ignored (logged once per name; request.unknown_features)",
                           metadata: ["field": "\(path)", "model_version": "\(modelVersion)"])
        }
        if full {
            logger.warning("more unknown request fields than \(Self.maxWarnedFeatures); no longer logged by name (prerank_request_features_total{feature=\"other\"} counts them)")
        }
    }

    private func logRequest(_ o: PreRankService.Outcome, arm: String) {
        guard let log = requestLogBox.withLock({ $0 }), log.shouldSample(requestID: o.request.requestID) else { return }
        let f = o.result.fusion
        var dropped: DroppedSample.Sample?
        if let n = current?.config.requestLog?.candidateSample, n > 0 {
            var rng = SystemRandomNumberGenerator()
            dropped = DroppedSample.draw(request: o.request, result: o.result, bundle: o.bundle, n: n, using: &rng)
        }
        let line = RequestLogLine.encode(
            time: Date().timeIntervalSince1970, requestID: o.request.requestID, modelVersion: o.bundle.version, arm: arm,
            fusion: (f.formula.rawValue, f.alpha, f.beta, f.gamma), user: o.request.user, query: o.request.query,
            candidates: o.request.candidates, relevance: o.request.relevance,
            items: o.result.items.map { ($0.id, $0.score, $0.probabilities) }, tasks: o.bundle.model.taskNames,
            partial: o.result.partial, dropped: dropped)
        log.submit(line)
    }

    // MARK: ops endpoints

    private func readiness() -> HTTPResponse {
        guard let snap = current else {
            return .json(503, Array("{\"status\":\"loading\"}".utf8))
        }
        return .json(200, Array("{\"status\":\"ready\",\"model_version\":\(JSONText.quote(snap.primary.version))}".utf8))
    }

    private func metricsResponse() -> HTTPResponse {
        if let stats = transportStats?() {
            metrics.setTransport(stats)
        }
        let load = pool.load
        metrics.setGauge("prerank_worker_queue_depth", help: "Requests waiting for a worker.", value: Double(load.queued))
        return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                            body: Array(metrics.render().utf8))
    }

    private func modelResponse() -> HTTPResponse {
        guard let snap = current else { return .error(APIError(status: 503, code: "not_ready", message: "no model loaded")) }
        // The configured depth; null means the default max(4·k, 256) of each request's k.
        let rescoreDepth = snap.options.rescoreDepth
        func describe(_ b: ServingBundle) -> String {
            let a = b.model.spec.architecture
            return "{\"version\":\(JSONText.quote(b.version)),\"fingerprint\":\(JSONText.quote(b.model.fingerprint)),"
                + "\"tasks\":[\(b.model.taskNames.map(JSONText.quote).joined(separator: ","))],"
                + "\"architecture\":{\"hidden\":[\(a.hidden.map(String.init).joined(separator: ","))],\"d\":\(a.d),\"fr\":\(a.fr),\"lr\":\(a.lr),\"clamp\":\(a.clamp),\"chain\":\"\(a.chain.rawValue)\"},"
                + "\"index\":{\"items\":\(b.index.count),\"dtype\":\"\(b.index.dtype.rawValue)\",\"d\":\(b.index.d),\"bytes\":\(b.index.vectorBytes),"
                + "\"rescore\":\(b.index.rescore == nil ? "null" : "{\"dtype\":\"f32\",\"bytes\":\(b.index.rescoreBytes),\"depth\":\(rescoreDepth.map(String.init) ?? "null")}"),"
                + "\"residency\":\"\(b.index.residency.rawValue)\",\"path\":\(JSONText.quote(b.index.path)),"
                + "\"mapped_at\":\(JSONText.quote(Self.iso8601(b.indexMappedAt))),"
                + "\"catalog\":{\"base_items\":\(b.index.count),\"delta_items\":\(b.delta.upsertedCount),"
                + "\"deleted_ids\":\(b.delta.deletedIDs.count),\"hidden_base_items\":\(b.delta.hiddenCount),"
                + "\"items\":\(b.itemCount),\"sequence\":\(b.delta.sequence),"
                + "\"base_sequence\":\(ServingBundle.baseSequence(b.index))}}}"
        }
        let f = snap.options.fusion
        var body = "{\"model\":\(describe(snap.primary)),"
        body += "\"fusion\":{\"formula\":\"\(f.formula.rawValue)\",\"alpha\":\(f.alpha),\"beta\":\(f.beta),\"gamma\":\(f.gamma),\"allow_request_override\":\(snap.options.allowFusionOverride)},"
        body += "\"topk\":{\"default\":\(snap.options.defaultK),\"max\":\(snap.options.maxK),\"rescore_depth\":\(rescoreDepth.map(String.init) ?? "null")},\"budget_ms\":\(snap.config.budgetMs)"
        if let canary = snap.canary, let c = snap.config.canary {
            let cf = snap.canaryOptions.fusion
            body += ",\"canary\":{\"share\":\(c.share),\"key\":\"\(c.key.rawValue)\",\"model\":\(describe(canary)),"
                + "\"fusion\":{\"formula\":\"\(cf.formula.rawValue)\",\"alpha\":\(cf.alpha),\"beta\":\(cf.beta),\"gamma\":\(cf.gamma)}}"
        }
        body += ",\"updates\":\(snap.config.model.updates.map(JSONText.quote) ?? "null")"
        body += ",\"loaded_at\":\(JSONText.quote(Self.iso8601(snap.loadedAt))),\"kernel\":\"\(BuildInfo.kernel)\"}"
        return .json(200, Array(body.utf8))
    }

    /// UTC with milliseconds: two reloads within a second must show different `loaded_at`.
    static func iso8601(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    // MARK: reload

    /// The admin endpoints' check: nil when the request carries the bearer token of
    /// `server.admin_token_file`; 403 when none is configured, 401 otherwise.
    private func authorize(_ request: HTTPRequest, disabled: String) -> APIError? {
        guard let token = current?.adminToken else {
            return APIError(status: 403, code: disabled, message: "no server.admin_token_file configured")
        }
        let auth = request.header("authorization") ?? ""
        guard auth.hasPrefix("Bearer "), Self.constantTimeEquals(String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces), token) else {
            return APIError(status: 401, code: "unauthorized", message: "a valid bearer token is required",
                            headers: [("WWW-Authenticate", "Bearer")])
        }
        return nil
    }

    private func adminReload(_ request: HTTPRequest, done: @escaping @Sendable (HTTPResponse, String?) -> Void) {
        if var error = authorize(request, disabled: "reload_disabled") {
            metrics.recordReload(result: "unauthorized")
            if error.status == 403 { error.message += "; use SIGHUP" }
            done(.error(error), nil)
            return
        }
        reload(trigger: "http") { result in
            switch result {
            case .success(let outcome):
                done(.json(200, Array(outcome.json.utf8)), nil)
            case .failure(let error):
                done(.error(APIError(status: 422, code: "reload_rejected", message: error.message, field: error.key)), nil)
            }
        }
    }

    // MARK: live catalog

    /// `POST /admin/items`: upserts and deletes over the served indexes, durable in the update
    /// log before the answer; every request that starts after the answer sees them.
    private func adminItems(_ request: HTTPRequest, done: @escaping @Sendable (HTTPResponse, String?) -> Void) {
        if let error = authorize(request, disabled: "updates_disabled") {
            metrics.recordItemUpdate(result: error.status == 401 ? "unauthorized" : "disabled")
            done(.error(error), nil)
            return
        }
        if let error = Self.mediaTypeError(request) {
            metrics.recordItemUpdate(result: "invalid")
            done(.error(error), nil)
            return
        }
        let change: CatalogChange
        do { change = try ItemChangeCodec.decode(request.body) } catch {
            metrics.recordItemUpdate(result: "invalid")
            done(.error(error), nil)
            return
        }
        // On the reload queue: serialised with reloads and other changes (see `LiveCatalog`).
        let body = request.body
        reloadQueue.async { [self] in applyItems(change, body: body, done: done) }
    }

    /// Runs on `reloadQueue`.
    private func applyItems(_ change: CatalogChange, body: [UInt8], done: @escaping @Sendable (HTTPResponse, String?) -> Void) {
        guard let snap = current else {
            done(.error(APIError(status: 503, code: "not_ready", message: "no model loaded", headers: [("Retry-After", "1")])), nil)
            return
        }
        do throws(APIError) {
            let (next, applied) = try catalog.apply(change, body: body, to: snap)
            snapshot.withLock { $0 = next }
            publishCatalog(next)
            metrics.recordItemUpdate(result: "ok")
            logger.info("items updated", metadata: [
                "upserted": "\(applied.upserted)", "deleted": "\(applied.deleted)", "not_found": "\(applied.notFound)",
                "items": "\(applied.items)", "tower_rows": "\(catalog.towerRows)",
                "sequence": "\(applied.sequence)", "seconds": "\(String(format: "%.4f", applied.seconds))",
            ])
            done(.json(200, Array("{\"upserted\":\(applied.upserted),\"deleted\":\(applied.deleted),\"not_found\":\(applied.notFound),\"items\":\(applied.items),\"sequence\":\(applied.sequence)}".utf8)), nil)
        } catch {
            metrics.recordItemUpdate(result: error.status == 400 ? "invalid" : error.status == 403 ? "disabled" : "failed")
            logger.info("admin/items", metadata: ["status": "\(error.status)", "code": "\(error.code)", "field": "\(error.field ?? "")"])
            done(.error(error), nil)
        }
    }

    private func publishCatalog(_ snap: ServingSnapshot) {
        metrics.setUpdateLog(catalog.logBytes.map {
            .init(bytes: $0, lastAppend: catalog.lastAppend?.timeIntervalSince1970 ?? 0, towerRows: catalog.towerRows)
        })
        metrics.setCatalog(snap.arms.map { arm, b in
            .init(arm: arm, baseItems: b.index.count, deltaItems: b.delta.upsertedCount, deletedItems: b.delta.deletedIDs.count,
                  sequence: b.delta.sequence)
        })
    }

    /// Reloads config, model and index off the serving path and swaps them in atomically;
    /// on any error the old snapshot keeps serving.
    ///
    /// Reloads run one at a time on the reload queue. A trigger that arrives while another
    /// reload is queued (not yet started) joins it: that reload starts after both triggers, so it
    /// reads what both asked for, and both completions get its result. Files that did not change
    /// are shared with the snapshot in force (`ServingCache`), so a config-only reload maps
    /// nothing.
    public func reload(trigger: String, completion: @escaping @Sendable (Result<ReloadOutcome, ReloadError>) -> Void = { _ in }) {
        let joined = queuedReload.withLock { queued -> Bool in
            if queued != nil {
                queued!.append(completion)
                return true
            }
            queued = [completion]
            return false
        }
        if joined {
            metrics.recordReloadCoalesced()
            return
        }
        reloadQueue.async { [self] in
            // From here on, new triggers queue the next reload: this one may have read the files already.
            let completions = queuedReload.withLock { queued in
                defer { queued = nil }
                return queued ?? []
            }
            let startedAt = Date()
            let before = cache.loadCounts
            var result = loadNext(trigger: trigger)
            let after = cache.loadCounts
            switch result {
            case .success(var outcome):
                outcome.modelsRead = after.modelLoads - before.modelLoads
                outcome.indexesMapped = after.indexLoads - before.indexLoads
                result = .success(outcome)
                metrics.recordReload(result: "ok")
                logger.notice("reload ok", metadata: [
                    "trigger": "\(trigger)", "model_version": "\(outcome.snapshot.primary.version)",
                    "seconds": "\(String(format: "%.3f", Date().timeIntervalSince(startedAt)))",
                    "models_read": "\(outcome.modelsRead)", "indexes_mapped": "\(outcome.indexesMapped)",
                    "applied": "\(outcome.applied.joined(separator: ","))",
                    "restart_required": "\(outcome.needsRestart.joined(separator: ","))",
                    "coalesced": "\(completions.count - 1)",
                ])
            case .failure(let error):
                metrics.recordReload(result: "rejected")
                logger.error("reload rejected; the old model keeps serving", metadata: ["trigger": "\(trigger)", "key": "\(error.key)",
                                                                                        "reason": "\(error.message)"])
            }
            for completion in completions { completion(result) }
        }
    }

    private func loadNext(trigger: String) -> Result<ReloadOutcome, ReloadError> {
        var config = current?.config ?? PreRankConfig()
        if let configPath {
            do { config = try ConfigLoader.load(path: configPath, requireModel: false) } catch {
                // A file-level error (empty, not YAML, unreadable) has no key: name the file.
                return .failure(ReloadError(key: error.key.isEmpty ? configPath : error.key, message: error.message))
            }
        }
        config = overrides(config)
        // The same rule as at start: the file (or the start's --model/--index) names the model.
        do { try config.requireModelPaths() } catch { return .failure(ReloadError(key: error.key, message: error.message)) }
        let plan = config.reloadPlan(previous: current?.config ?? started, started: started)
        // A new certificate/key pair is loaded and checked before anything is swapped: a bad pair
        // rejects the reload and the pair in force keeps serving.
        var nextTLS: TLSContext?
        if let tls = tlsContext, let files = config.server.tls {
            do { nextTLS = try TLSContext(certificate: files.cert, privateKey: files.key, profile: tls.profile) } catch {
                return .failure(ReloadError(key: error.key, message: error.message))
            }
        }
        let next: ServingSnapshot
        do {
            // The update log replayed on top of the (new) bases: a reload never drops a change.
            next = try catalog.attach(try ServingSnapshot.load(config: config, parallelism: parallelism, cache: cache), previous: current)
        } catch {
            cache.discard()
            return .failure(error)
        }
        requestLogBox.withLock { $0 }?.flush()
        // The replaced snapshot is released here or by the last request still using it; either
        // way its model and index are freed on `ReleaseQueue`, off the request path.
        snapshot.withLock { $0 = next }
        cache.commit()
        LineLogHandler.Live.server.set(level: config.logging.level, format: config.logging.format)
        if let nextTLS, let tls = tlsContext {
            tls.replace(with: nextTLS)
            logger.notice("reload: TLS certificate in force", metadata: ["sha256": "\(tls.certificateFingerprint)"])
        }
        swapRequestLog(config.requestLog)
        publishModelInfo(next)
        // Only once the reload is in force: a refused one changes nothing, not even the pending list.
        metrics.setRestartPending(plan.needsRestart)
        if !plan.needsRestart.isEmpty {
            logger.warning("reload: these keys differ from the running server and apply only at the next restart; the rest is applied", metadata: [
                "trigger": "\(trigger)", "keys": "\(plan.needsRestart.joined(separator: ","))"])
        }
        return .success(ReloadOutcome(snapshot: next, applied: plan.applied, needsRestart: plan.needsRestart))
    }

    private func swapRequestLog(_ wanted: PreRankConfig.RequestLog?) {
        let old = requestLogBox.withLock { box -> RequestLog? in
            let current = box
            let same: Bool
            if let current, let wanted {
                same = current.config.dir == wanted.dir && current.config.sampleRate == wanted.sampleRate
                    && current.config.maxFileBytes == wanted.maxFileBytes && current.config.maxFiles == wanted.maxFiles
                    && current.config.maxFileAgeSeconds == Double(wanted.maxFileAgeSeconds)
            } else {
                same = current == nil && wanted == nil
            }
            if same { return nil }
            box = wanted.map { Self.makeRequestLog($0, metrics: metrics) }
            return current
        }
        old?.close()
    }

    /// Flushes and closes the request log (SIGTERM), stops the workers after queued work.
    public func shutdown() {
        requestLogBox.withLock { $0 }?.close()
        pool.stop()
    }

    private func publishModelInfo(_ snap: ServingSnapshot) {
        publishCatalog(snap)
        var info = [Self.info(snap.primary, arm: "primary", fusion: snap.options.fusion)]
        if let canary = snap.canary { info.append(Self.info(canary, arm: "canary", fusion: snap.canaryOptions.fusion)) }
        metrics.setModelInfo(info)
        metrics.setCanaryShare(snap.canary == nil ? 0 : snap.config.canary?.share ?? 0)
    }

    static func info(_ b: ServingBundle, arm: String, fusion: FusionPolicy) -> MetricsRegistry.ModelInfo {
        .init(arm: arm, version: b.version, fingerprint: b.model.fingerprint, dtype: b.index.dtype.rawValue,
              items: b.index.count, tasks: b.model.taskNames, fusion: fusion)
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}
