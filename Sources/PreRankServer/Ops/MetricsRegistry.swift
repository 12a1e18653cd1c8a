import Fusion
import HTTPTransport
import Synchronization

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
        var latency: [String: BucketHistogram] = [:]           // by route
        var stages: [String: BucketHistogram] = [:]            // by stage
        var candidates = BucketHistogram(bounds: BucketHistogram.candidateCounts)
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
            $0.latency[route, default: BucketHistogram(bounds: BucketHistogram.latencySeconds)].observe(seconds)
        }
    }

    public func recordStage(_ stage: String, seconds: Double) {
        state.withLock { $0.stages[stage, default: BucketHistogram(bounds: BucketHistogram.latencySeconds)].observe(seconds) }
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

    /// The exposition text: the family tables (`MetricsRegistry+Families.swift`), the gauges
    /// registered by name between them, then the `process_*` metrics.
    public func render() -> String {
        let s = state.withLock { $0 }
        var out = ""
        for family in Self.servingFamilies { family.render(s, into: &out) }
        for (name, g) in s.gauges.sorted(by: { $0.key < $1.key }) {
            let value = MetricFamily.format(g.value)
            MetricFamily(name, .gauge, g.help) { _ in [.init("", value)] }.render(s, into: &out)
        }
        for family in Self.buildFamilies { family.render(s, into: &out) }
        if let p = ProcessMetrics.read() { out += p.render() }
        return out
    }
}
