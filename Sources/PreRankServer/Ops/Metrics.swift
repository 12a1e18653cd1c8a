import Fusion
import HTTPTransport
import Synchronization

/// A cumulative histogram with fixed upper bounds (Prometheus `le` buckets).
public struct Histogram: Sendable {
    public let bounds: [Double]
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double]) {
        self.bounds = bounds
        self.counts = [UInt64](repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ value: Double) {
        // Non-cumulative per bucket; made cumulative when rendered.
        if let i = bounds.firstIndex(where: { value <= $0 }) { counts[i] += 1 }
        sum += value
        count += 1
    }

    /// Latency buckets in seconds: 0.25 ms … 2.5 s, dense around the 150 ms budget.
    public static let latencySeconds: [Double] = [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                                  0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 1, 2.5]
    public static let candidateCounts: [Double] = [0, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 1e6]
}

/// The server's metrics, rendered in the Prometheus text exposition format (version 0.0.4).
///
/// One mutex guards everything: an update is a few additions, far cheaper than a request, and
/// a scrape sees a consistent snapshot. Names follow Prometheus conventions: every count since
/// start is a `counter` named `*_total` (so `rate()` handles restarts), `_seconds`/`_bytes` units,
/// the standard `process_*` metrics (`ProcessMetrics`) and `prerank_build_info`; `promtool check
/// metrics` passes on the output (Tests/reference/test_ops_truth.py). docs/OPERATIONS.md and deploy/
/// dashboards and alerts use these names. Hand-rolled rather than swift-prometheus: one lock,
/// one snapshot per scrape, and nothing to bootstrap in the library's global MetricsSystem.
public final class MetricsRegistry: Sendable {
    struct State {
        var requests: [RequestKey: UInt64] = [:]
        var latency: [String: Histogram] = [:]           // by route
        var stages: [String: Histogram] = [:]            // by stage
        var candidates = Histogram(bounds: Histogram.candidateCounts)
        var partial: UInt64 = 0
        var shed: UInt64 = 0
        var budgetExpired: UInt64 = 0
        var reloads: [String: UInt64] = [:]              // by result
        var modelInfo: [ModelInfo] = []
        var inflight: Int = 0
        var requestLogDropped: UInt64 = 0
        var requestLogWritten: UInt64 = 0
        var arms: [String: UInt64] = [:]
        var gauges: [String: (help: String, value: Double)] = [:]
        /// `POST /admin/items` by result (ok, invalid, unauthorized, disabled, failed).
        var itemUpdates: [String: UInt64] = [:]
        /// The live catalog by arm: delta items, deleted ids, last sequence applied.
        var catalog: [CatalogGauges] = []
        /// The update log this server writes (nil: none).
        var updateLog: UpdateLogGauges?
        var transport: HTTPServerStats?
        var loads = LoadCounts()
        var reloadsCoalesced: UInt64 = 0
        /// `canary.share` in force; 0 without a canary.
        var canaryShare = 0.0
        /// `/prerank` features by (feature, outcome); unknown request fields are all `other`.
        var features: [FeatureKey: UInt64] = [:]
        /// Restart-only keys the last applied reload found changed (`PreRankConfig.restartOnlyKeys`).
        var restartPending: [String] = []
    }

    /// Model directories and index files read since start, and reloads that shared them instead.
    struct LoadCounts { var modelLoads = 0, indexLoads = 0, modelsReused = 0, indexesReused = 0 }

    struct RequestKey: Hashable { var route: String; var code: Int; var arm: String }
    struct FeatureKey: Hashable { var feature: String; var outcome: FeatureAudit.Outcome }

    /// The `feature` label of request fields the model does not know: their names are the
    /// client's, unbounded, so one label holds them all (the warning log names each once).
    public static let unknownFeatureLabel = "other"

    public struct ModelInfo: Sendable, Equatable {
        public var arm: String
        public var version: String
        public var fingerprint: String
        public var dtype: String
        public var items: Int
        public var tasks: [String]
        /// The fusion this arm scores with (nil: not exported).
        public var fusion: FusionPolicy?
        public init(arm: String, version: String, fingerprint: String, dtype: String, items: Int, tasks: [String],
                    fusion: FusionPolicy? = nil) {
            self.fusion = fusion
            self.arm = arm
            self.version = version
            self.fingerprint = fingerprint
            self.dtype = dtype
            self.items = items
            self.tasks = tasks
        }
    }

    /// Stage names exported under `prerank_stage_duration_seconds{stage=...}`.
    public static let stageNames = ["parse", "user_tower", "resolve", "score", "rescore", "topk", "encode"]

    private let state = Mutex(State())

    public init() {}

    public func recordRequest(route: String, code: Int, seconds: Double, arm: String = "") {
        state.withLock {
            $0.requests[RequestKey(route: route, code: code, arm: arm), default: 0] += 1
            $0.latency[route, default: Histogram(bounds: Histogram.latencySeconds)].observe(seconds)
        }
    }

    public func recordStage(_ stage: String, seconds: Double) {
        state.withLock { $0.stages[stage, default: Histogram(bounds: Histogram.latencySeconds)].observe(seconds) }
    }

    public func recordCandidates(_ n: Int) { state.withLock { $0.candidates.observe(Double(n)) } }
    public func recordPartial() { state.withLock { $0.partial += 1 } }
    public func recordShed() { state.withLock { $0.shed += 1 } }
    public func recordBudgetExpired() { state.withLock { $0.budgetExpired += 1 } }
    /// The live catalog of one arm, as `/metrics` shows it.
    public struct CatalogGauges: Sendable, Equatable {
        public var arm: String
        public var baseItems: Int
        public var deltaItems: Int
        public var deletedItems: Int
        public var sequence: UInt64
        public init(arm: String, baseItems: Int, deltaItems: Int, deletedItems: Int, sequence: UInt64) {
            self.arm = arm
            self.baseItems = baseItems
            self.deltaItems = deltaItems
            self.deletedItems = deletedItems
            self.sequence = sequence
        }
    }
    /// The live catalog's update log, as `/metrics` shows it (issue #21).
    public struct UpdateLogGauges: Sendable, Equatable {
        /// Bytes of the log file this server writes.
        public var bytes: Int
        /// Unix time of the last change appended (0: none since start).
        public var lastAppend: Double
        /// Rows run through an item tower for the live catalog since start.
        public var towerRows: Int
        public init(bytes: Int, lastAppend: Double, towerRows: Int) {
            self.bytes = bytes
            self.lastAppend = lastAppend
            self.towerRows = towerRows
        }
    }
    public func setUpdateLog(_ gauges: UpdateLogGauges?) { state.withLock { $0.updateLog = gauges } }
    public func recordItemUpdate(result: String) { state.withLock { $0.itemUpdates[result, default: 0] += 1 } }
    public func setCatalog(_ gauges: [CatalogGauges]) { state.withLock { $0.catalog = gauges } }
    public func recordReload(result: String) { state.withLock { $0.reloads[result, default: 0] += 1 } }
    /// A reload trigger that joined a reload already queued (one reload answers both).
    public func recordReloadCoalesced() { state.withLock { $0.reloadsCoalesced += 1 } }
    /// The loader's running totals (`ServingCache`): files read versus shared by reloads.
    public func setLoadCounts(modelLoads: Int, indexLoads: Int, modelsReused: Int, indexesReused: Int) {
        state.withLock { $0.loads = LoadCounts(modelLoads: modelLoads, indexLoads: indexLoads, modelsReused: modelsReused, indexesReused: indexesReused) }
    }
    public func setModelInfo(_ info: [ModelInfo]) { state.withLock { $0.modelInfo = info } }
    /// The configured canary share (0: no canary), for comparing with the routed share.
    public func setCanaryShare(_ share: Double) { state.withLock { $0.canaryShare = share } }
    /// One request's features: the model's by name (a bounded set: the served models' features),
    /// unknown request fields under `unknownFeatureLabel`. One lock for the whole request.
    public func recordFeatures(_ audit: FeatureAudit) {
        state.withLock { s in
            for name in audit.used { s.features[FeatureKey(feature: name, outcome: .used), default: 0] += 1 }
            for name in audit.missing { s.features[FeatureKey(feature: name, outcome: .missing), default: 0] += 1 }
            for path in audit.coerced {
                let name = path.split(separator: ".", maxSplits: 1).last.map(String.init) ?? path
                s.features[FeatureKey(feature: name, outcome: .coerced), default: 0] += 1
            }
            if !audit.ignored.isEmpty {
                s.features[FeatureKey(feature: Self.unknownFeatureLabel, outcome: .ignored), default: 0] += UInt64(audit.ignored.count)
            }
        }
    }

    /// The restart-only keys whose reloaded values wait for a restart (empty: none).
    public func setRestartPending(_ keys: [String]) { state.withLock { $0.restartPending = keys } }
    public func adjustInflight(_ delta: Int) { state.withLock { $0.inflight += delta } }
    public func recordRequestLog(written: Int = 0, dropped: Int = 0) {
        state.withLock {
            $0.requestLogWritten += UInt64(written)
            $0.requestLogDropped += UInt64(dropped)
        }
    }
    /// Sets a named gauge (e.g. HTTP connection counts pulled from the server at scrape time).
    public func setGauge(_ name: String, help: String, value: Double) {
        state.withLock { $0.gauges[name] = (help, value) }
    }

    /// The HTTP layer answered `code` itself (framing refusal, limit, timeout, full budget):
    /// counted in `prerank_requests_total` under route `(transport)`, without a latency sample.
    public func recordTransportRefusal(code: Int) {
        state.withLock { $0.requests[RequestKey(route: "(transport)", code: code, arm: ""), default: 0] += 1 }
    }

    /// HTTP-layer counters, pulled from the server at scrape time.
    public func setTransport(_ stats: HTTPServerStats) { state.withLock { $0.transport = stats } }

    public func requestCount(route: String, code: Int) -> UInt64 {
        state.withLock { s in s.requests.filter { $0.key.route == route && $0.key.code == code }.values.reduce(0, +) }
    }

    /// The exposition text.
    public func render() -> String {
        let s = state.withLock { $0 }
        var out = ""
        func header(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func histogram(_ name: String, _ labels: String, _ h: Histogram) {
            var cumulative: UInt64 = 0
            let sep = labels.isEmpty ? "" : ","
            for (bound, c) in zip(h.bounds, h.counts) {
                cumulative += c
                out += "\(name)_bucket{\(labels)\(sep)le=\"\(format(bound))\"} \(cumulative)\n"
            }
            out += "\(name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(h.count)\n"
            let l = labels.isEmpty ? "" : "{\(labels)}"
            out += "\(name)_sum\(l) \(format(h.sum))\n\(name)_count\(l) \(h.count)\n"
        }

        header("prerank_requests_total", "counter", "HTTP requests answered, by route, status code and serving arm.")
        for (key, v) in s.requests.sorted(by: { ($0.key.route, $0.key.code, $0.key.arm) < ($1.key.route, $1.key.code, $1.key.arm) }) {
            out += "prerank_requests_total{route=\"\(escape(key.route))\",code=\"\(key.code)\",arm=\"\(escape(key.arm))\"} \(v)\n"
        }
        header("prerank_request_duration_seconds", "histogram", "Time from request received to response ready, by route.")
        for (route, h) in s.latency.sorted(by: { $0.key < $1.key }) {
            histogram("prerank_request_duration_seconds", "route=\"\(escape(route))\"", h)
        }
        header("prerank_stage_duration_seconds", "histogram", "Time per /prerank stage: parse, user_tower, resolve (ids to rows), score, rescore (F32 rescoring of a quantised scan), topk, encode.")
        for (stage, h) in s.stages.sorted(by: { $0.key < $1.key }) {
            histogram("prerank_stage_duration_seconds", "stage=\"\(escape(stage))\"", h)
        }
        header("prerank_candidates_per_request", "histogram", "Candidates per /prerank request (index size when omitted).")
        histogram("prerank_candidates_per_request", "", s.candidates)
        header("prerank_request_features_total", "counter", "User-side features of answered /prerank requests, by model feature and outcome (used, ignored, missing, coerced); request fields the model does not know count as feature=\"other\", outcome=\"ignored\".")
        out += "prerank_request_features_total{feature=\"\(Self.unknownFeatureLabel)\",outcome=\"ignored\"} \(s.features[FeatureKey(feature: Self.unknownFeatureLabel, outcome: .ignored)] ?? 0)\n"
        for (key, v) in s.features.sorted(by: { ($0.key.feature, $0.key.outcome.rawValue) < ($1.key.feature, $1.key.outcome.rawValue) })
        where !(key.feature == Self.unknownFeatureLabel && key.outcome == .ignored) {
            out += "prerank_request_features_total{feature=\"\(escape(key.feature))\",outcome=\"\(key.outcome.rawValue)\"} \(v)\n"
        }
        header("prerank_partial_responses_total", "counter", "Responses cut short by the time budget (partial: true).")
        out += "prerank_partial_responses_total \(s.partial)\n"
        header("prerank_budget_expired_total", "counter", "Requests answered 504 because the budget expired before scoring.")
        out += "prerank_budget_expired_total \(s.budgetExpired)\n"
        header("prerank_shed_total", "counter", "Requests refused with 503 because the worker queue was full.")
        out += "prerank_shed_total \(s.shed)\n"
        header("prerank_inflight_requests", "gauge", "Requests being scored or queued for a worker.")
        out += "prerank_inflight_requests \(s.inflight)\n"
        header("prerank_reloads_total", "counter", "Reloads of config, model and index, by result (ok, rejected, unauthorized).")
        for result in ["ok", "rejected"] where s.reloads[result] == nil { out += "prerank_reloads_total{result=\"\(result)\"} 0\n" }
        for (result, v) in s.reloads.sorted(by: { $0.key < $1.key }) {
            out += "prerank_reloads_total{result=\"\(escape(result))\"} \(v)\n"
        }
        header("prerank_item_updates_total", "counter", "POST /admin/items by result (ok, invalid, unauthorized, disabled, failed).")
        for result in ["ok", "invalid"] where s.itemUpdates[result] == nil { out += "prerank_item_updates_total{result=\"\(result)\"} 0\n" }
        for (result, v) in s.itemUpdates.sorted(by: { $0.key < $1.key }) {
            out += "prerank_item_updates_total{result=\"\(escape(result))\"} \(v)\n"
        }
        header("prerank_index_base_items", "gauge", "Items in the mapped base index, by arm.")
        for c in s.catalog { out += "prerank_index_base_items{arm=\"\(c.arm)\"} \(c.baseItems)\n" }
        header("prerank_index_delta_items", "gauge", "Items upserted over the base index (live catalog), by arm.")
        for c in s.catalog { out += "prerank_index_delta_items{arm=\"\(c.arm)\"} \(c.deltaItems)\n" }
        header("prerank_index_deleted_items", "gauge", "Ids deleted from the live catalog and not upserted since, by arm.")
        for c in s.catalog { out += "prerank_index_deleted_items{arm=\"\(c.arm)\"} \(c.deletedItems)\n" }
        header("prerank_updates_sequence", "gauge", "Last update-log sequence applied to the served catalog, by arm.")
        for c in s.catalog { out += "prerank_updates_sequence{arm=\"\(c.arm)\"} \(c.sequence)\n" }
        if let u = s.updateLog {
            header("prerank_updates_log_bytes", "gauge", "Bytes of the update log (model.updates) this server writes.")
            out += "prerank_updates_log_bytes \(u.bytes)\n"
            header("prerank_updates_log_last_append_timestamp_seconds", "gauge", "Unix time of the last change appended to the update log (0: none since start).")
            out += "prerank_updates_log_last_append_timestamp_seconds \(u.lastAppend)\n"
            header("prerank_item_tower_rows_total", "counter", "Item rows run through an item tower for the live catalog (changes and replays): one per row per distinct model and index.")
            out += "prerank_item_tower_rows_total \(u.towerRows)\n"
        }
        // Every restart-only key, 0 or 1: a bounded set, and an alert can name the key.
        header("prerank_config_restart_pending", "gauge", "1 for each restart-only config key whose reloaded value is not in force until the next restart.")
        for key in PreRankConfig.restartOnlyKeys {
            out += "prerank_config_restart_pending{key=\"\(key)\"} \(s.restartPending.contains(key) ? 1 : 0)\n"
        }
        header("prerank_reloads_coalesced_total", "counter", "Reload triggers (SIGHUP, POST /admin/reload) answered by a reload already queued.")
        out += "prerank_reloads_coalesced_total \(s.reloadsCoalesced)\n"
        header("prerank_model_loads_total", "counter", "Model directories read (start and reloads); an unchanged one is shared, not read.")
        out += "prerank_model_loads_total \(s.loads.modelLoads)\n"
        header("prerank_index_loads_total", "counter", "Index files mapped and faulted in (start and reloads); an unchanged one is shared, not re-mapped.")
        out += "prerank_index_loads_total \(s.loads.indexLoads)\n"
        header("prerank_reload_reused_total", "counter", "Models and indexes a reload shared with the snapshot in force because their files were unchanged.")
        out += "prerank_reload_reused_total{part=\"model\"} \(s.loads.modelsReused)\n"
        out += "prerank_reload_reused_total{part=\"index\"} \(s.loads.indexesReused)\n"
        header("prerank_model_info", "gauge", "The model and index in force (value 1), by arm.")
        for m in s.modelInfo {
            out += "prerank_model_info{arm=\"\(escape(m.arm))\",version=\"\(escape(m.version))\",fingerprint=\"\(escape(m.fingerprint))\",dtype=\"\(m.dtype)\",tasks=\"\(escape(m.tasks.joined(separator: ",")))\"} 1\n"
        }
        header("prerank_fusion_weight", "gauge", "Fusion weights in force, by arm and term (alpha: CTR, beta: CTCVR, gamma: relevance).")
        for m in s.modelInfo {
            guard let f = m.fusion else { continue }
            for (term, v) in [("alpha", f.alpha), ("beta", f.beta), ("gamma", f.gamma)] {
                out += "prerank_fusion_weight{arm=\"\(escape(m.arm))\",formula=\"\(f.formula.rawValue)\",term=\"\(term)\"} \(v)\n"
            }
        }
        // Beside prerank_requests_total{arm}: the alert PrerankCanaryShareOff compares the two.
        header("prerank_canary_share", "gauge", "Configured share of /prerank requests routed to the canary (canary.share; 0 without a canary).")
        out += "prerank_canary_share \(format(s.canaryShare))\n"
        header("prerank_index_items", "gauge", "Items in the index in force, by arm.")
        for m in s.modelInfo { out += "prerank_index_items{arm=\"\(escape(m.arm))\"} \(m.items)\n" }
        header("prerank_request_log_lines_total", "counter", "Request-log lines written.")
        out += "prerank_request_log_lines_total \(s.requestLogWritten)\n"
        header("prerank_request_log_dropped_total", "counter", "Request-log lines dropped because the log queue was full.")
        out += "prerank_request_log_dropped_total \(s.requestLogDropped)\n"
        header("prerank_log_lines_dropped_total", "counter", "stderr log lines (access lines) dropped because the asynchronous log writer was full.")
        out += "prerank_log_lines_dropped_total \(AsyncLogWriter.dropped)\n"
        if let t = s.transport {
            header("prerank_http_connections_open", "gauge", "Open HTTP connections.")
            out += "prerank_http_connections_open \(t.open)\n"
            header("prerank_http_connections_accepted_total", "counter", "HTTP connections accepted.")
            out += "prerank_http_connections_accepted_total \(t.accepted)\n"
            header("prerank_http_connections_rejected_total", "counter", "HTTP connections refused at the connection limit.")
            out += "prerank_http_connections_rejected_total \(t.rejected)\n"
            header("prerank_http_protocol_errors_total", "counter", "Requests refused by the HTTP parser.")
            out += "prerank_http_protocol_errors_total \(t.protocolErrors)\n"
            header("prerank_http_timeouts_total", "counter", "Connections cut by a deadline, by kind: head (incl. silent), body, idle (keep-alive), write (answer not taken).")
            for (kind, v) in [("body", t.bodyTimeouts), ("head", t.headTimeouts), ("idle", t.idleTimeouts), ("write", t.writeTimeouts)] {
                out += "prerank_http_timeouts_total{kind=\"\(kind)\"} \(v)\n"
            }
            header("prerank_http_connections_evicted_total", "counter", "Idle connections closed to admit a new one at max_connections.")
            out += "prerank_http_connections_evicted_total \(t.evicted)\n"
            header("prerank_http_budget_refusals_total", "counter", "Requests answered 503 because the buffered-bytes budget was spent.")
            out += "prerank_http_budget_refusals_total \(t.budgetRefusals)\n"
            header("prerank_http_buffered_bytes", "gauge", "Request bytes reserved in the buffered-bytes budget (bodies, inflated gzip).")
            out += "prerank_http_buffered_bytes \(t.bufferedBytes)\n"
            header("prerank_http_buffered_bytes_limit", "gauge", "The buffered-bytes budget (server.max_buffered_bytes).")
            out += "prerank_http_buffered_bytes_limit \(t.bufferedBytesLimit)\n"
        }
        for (name, g) in s.gauges.sorted(by: { $0.key < $1.key }) {
            header(name, "gauge", g.help)
            out += "\(name) \(format(g.value))\n"
        }
        header("prerank_tls_handshake_failures_total", "counter", "TLS handshakes that failed (protocol, cipher or group refused, bad client); reasons are logged at debug.")
        out += "prerank_tls_handshake_failures_total \(TLSContext.handshakeFailures)\n"
        header("prerank_build_info", "gauge", "The build serving (value 1): version, git commit, Swift compiler, scoring kernel in use.")
        out += "prerank_build_info{version=\"\(escape(BuildInfo.version))\",commit=\"\(escape(BuildInfo.commit))\",swift=\"\(escape(BuildInfo.swift))\",kernel=\"\(escape(BuildInfo.kernel))\"} 1\n"
        if let p = ProcessMetrics.read() { out += p.render() }
        return out
    }

    private func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
