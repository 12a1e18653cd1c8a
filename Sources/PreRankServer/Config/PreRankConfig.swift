import Fusion
import Logging

/// The server's configuration (SPEC §5, `config/prerank.yaml`).
///
/// Every property but the model paths has a default, the value used when the file leaves the key
/// out. `model.dir` and `model.index` have none (empty here): which model serves is never a
/// default, and `ConfigLoader` refuses a file that does not name them. Optional sections (`server.tls`, `request_log`,
/// `canary`) are `nil` when absent, which turns the feature off. `ConfigLoader` reads a file
/// into this type and checks every key, type and range; values built in code are not checked.
public struct PreRankConfig: Sendable, Equatable {
    public var server = Server()
    public var model = ModelPaths()
    /// Time budget of one `/prerank` request, from the end of its head to its answer.
    public var budgetMs: Double = 150
    public var topk = TopK()
    public var fusion = FusionSettings()
    public var logging = LogSettings()
    public var requestLog: RequestLog? = nil
    public var canary: Canary? = nil
    public var request = RequestSettings()

    public init() {}

    /// Throws unless `model.dir` and `model.index` are named: by the file, or by the flags that
    /// override them (`serve --model --index`). Start-up, reload and `validate-config` all call it.
    public func requireModelPaths() throws(ConfigError) {
        for (key, value, flag) in [("model.dir", model.dir, "--model"), ("model.index", model.index, "--index")] where value.isEmpty {
            throw ConfigError(key: key, message: "is required: the config must name it (or \(flag) on the command line); there is no default path")
        }
    }

    /// `server`: the listener, its limits and timeouts.
    public struct Server: Sendable, Equatable {
        /// Loopback by default: exposing the server is a decision to make in the file.
        public var host = "127.0.0.1"
        public var port = 8080
        /// `server.port` and `--port`: 0 binds a free port (tests, side-by-side runs).
        public static let portRange = 0...65535
        /// Open connections at most: at the limit the connection idle longest (no request in
        /// progress) is closed to admit a new one; if none is idle, the new one gets 503.
        public var maxConnections = 1024
        /// Larger bodies are refused with 413 before they are read.
        public var maxBodyBytes = 8 << 20
        /// Request bytes buffered by all connections together (bodies and inflated gzip). When
        /// spent, new bodies are answered 503 + Retry-After and growing ones stop being read:
        /// memory stays bounded however many clients stall half-way through an upload.
        public var maxBufferedBytes = 256 << 20
        /// A request head (request line and headers) larger than this is refused with 431.
        public var maxHeaderBytes = 16384
        /// Absolute deadline for a whole request head: from accept for the first request, from
        /// its first byte for later ones on a keep-alive connection.
        public var headerTimeoutMs = 5000
        /// Absolute deadline for a whole body, from the end of its head (reads do not extend it).
        public var bodyTimeoutMs = 10000
        /// A keep-alive connection with no request for this long is closed.
        public var idleTimeoutMs = 60000
        /// Scoring threads; 0 means one per core.
        public var workers = 0
        /// Requests waiting for a worker; beyond this they are shed with 503 and Retry-After.
        /// Small on purpose: a request that waits longer than its budget is useless.
        public var queueDepth = 64
        /// More candidates than this in one request is a 400.
        public var maxCandidates = 100_000
        public var tls: TLS? = nil
        /// File holding the bearer token of `POST /admin/reload`; `nil` disables the endpoint.
        public var adminTokenFile: String? = nil

        public init() {}

        /// The keys whose change a reload cannot apply: the listener and its limits are set up
        /// once at start. (`max_candidates`, `admin_token_file` and the TLS certificate and key
        /// files are read on reload and apply.)
        public func keysNeedingRestart(comparedWith old: Server) -> [String] {
            var keys: [String] = []
            func check<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { keys.append("server." + name) } }
            check("host", host, old.host)
            check("port", port, old.port)
            check("max_connections", maxConnections, old.maxConnections)
            check("max_body_bytes", maxBodyBytes, old.maxBodyBytes)
            check("max_buffered_bytes", maxBufferedBytes, old.maxBufferedBytes)
            check("max_header_bytes", maxHeaderBytes, old.maxHeaderBytes)
            check("header_timeout_ms", headerTimeoutMs, old.headerTimeoutMs)
            check("body_timeout_ms", bodyTimeoutMs, old.bodyTimeoutMs)
            check("idle_timeout_ms", idleTimeoutMs, old.idleTimeoutMs)
            check("workers", workers, old.workers)
            check("queue_depth", queueDepth, old.queueDepth)
            // The certificate and key files are re-read on reload; whether TLS is on and its
            // profile are bound at start.
            var a = tls, b = old.tls
            a?.cert = ""; a?.key = ""; b?.cert = ""; b?.key = ""
            check("tls", a, b)
            return keys
        }
    }

    /// `server.tls`: PEM files; both are required when the section is present.
    public struct TLS: Sendable, Equatable {
        public var cert: String
        public var key: String
        /// Mozilla's server-side TLS profile: `intermediate` (default) or `modern` (TLS 1.3 only).
        public var profile: TLSProfile = .intermediate
        public init(cert: String, key: String, profile: TLSProfile = .intermediate) {
            self.cert = cert
            self.key = key
            self.profile = profile
        }
    }

    /// Mozilla's recommended server configurations (https://wiki.mozilla.org/Security/Server_Side_TLS).
    public enum TLSProfile: String, Sendable, Equatable, CaseIterable {
        /// TLS 1.2 with ECDHE + AEAD suites only, and TLS 1.3; groups X25519, P-256, P-384.
        case intermediate
        /// TLS 1.3 only (clients from 2018 on).
        case modern
    }

    /// `model` (and `canary.model`): a model directory and the item index built from it.
    /// No default path: empty until a file or a flag names them (`requireModelPaths`). Before
    /// issue #27 an empty config served `demo/model` from the working directory, silently.
    public struct ModelPaths: Sendable, Equatable {
        public var dir = ""
        public var index = ""
        /// The live catalog's update log (`POST /admin/items`, SPEC §1 "Update log"); nil
        /// (the default) leaves the catalog as the index holds it and the endpoint off.
        /// Read from `model` only: one log serves the primary and the canary.
        public var updates: String? = nil
        public init() {}
        public init(dir: String, index: String) {
            self.dir = dir
            self.index = index
        }
    }

    /// `topk`: the `k` used when a request gives none, and the cap on a request's `k`.
    public struct TopK: Sendable, Equatable {
        public var `default` = 100
        public var max = 1000
        /// Candidates rescored exactly from F32 rows after a quantised scan (indexes built with
        /// `--rescore`); nil: `max(4·k, 256)`. Larger: closer to the F32 answer, slower.
        public var rescoreDepth: Int?
        /// Whether a request that omits `candidates` scores the whole index (SPEC §2). Turn it
        /// off where no caller should ever do that: such a request is then a 400, not N rows
        /// of work.
        public var allowWholeIndex = true
        public init() {}
    }

    /// `fusion`: the formula and weights in force (SPEC §2).
    public struct FusionSettings: Sendable, Equatable {
        public var formula: FusionFormula = .additive
        public var alpha = 1.0
        public var beta = 20.0
        public var gamma = 0.0
        /// Whether a request's `fusion` object may override the weights.
        public var allowRequestOverride = false
        public init() {}

        /// The weights as the scoring engine takes them.
        public var policy: FusionPolicy { FusionPolicy(formula: formula, alpha: alpha, beta: beta, gamma: gamma) }
    }

    /// `logging`: stderr log lines.
    public struct LogSettings: Sendable, Equatable {
        public var level: Logger.Level = .info
        public var format: LineLogHandler.Format = .text
        /// Share of answered (2xx) `/prerank` requests that write an access line at info level,
        /// 0...1. Refusals and errors are always logged. Default 0: at hundreds of requests a
        /// second a line each is megabytes a minute, and the request log (`request_log`) is the
        /// record of answers.
        public var accessSampleRate = 0.0
        public init() {}
    }

    /// `request`: how `/prerank` treats request fields the model has no feature for.
    public struct RequestSettings: Sendable, Equatable {
        public var unknownFeatures: UnknownFeatures = .warn
        public init() {}
    }

    /// `request.unknown_features`. Every policy counts them in
    /// `prerank_request_features_total{outcome="ignored"}` and lists them under `"debug": true`.
    public enum UnknownFeatures: String, Sendable, Equatable, CaseIterable {
        /// Score without them (SPEC §2), silently.
        case ignore
        /// Score without them, and log a warning the first time each field name is seen.
        case warn
        /// Answer 400 `unknown_feature` naming the field.
        case reject
    }

    /// `request_log`: sampled requests and answers as JSON lines, for joining with feedback.
    public struct RequestLog: Sendable, Equatable {
        public var dir = "logs/requests"
        /// Share of requests logged, 0...1.
        public var sampleRate = 0.01
        public var maxFileBytes = 64 << 20
        public var maxFiles = 100
        /// A file is finished (and gzipped) once this old, in seconds, as well as by size: on a
        /// quiet server `join-logs` still sees traffic within this time.
        public var maxFileAgeSeconds = 3600
        /// Per logged request, a uniform sample of this many candidates that were scored and not
        /// returned, with probabilities and inclusion probability (`DroppedSample`); 0: none.
        public var candidateSample = 0
        public init() {}
    }

    /// `canary`: a second model that serves a share of the traffic (A/B). Its `model` paths have
    /// no default: a canary of the demo model would be a mistake, not a choice.
    public struct Canary: Sendable, Equatable {
        /// The canary's own model and index; nil: the primary's (a fusion-only A/B).
        public var model: ModelPaths?
        /// The canary's fusion (the primary's `allow_request_override` applies); nil: the primary's.
        public var fusion: FusionSettings?
        /// Share of requests routed to the canary, 0...1.
        public var share = 0.05
        /// What the routing hashes, so that one request id or one user always gets the same arm.
        public var key: Key = .requestID

        public enum Key: String, Sendable, Equatable, CaseIterable {
            case requestID = "request_id"
            case userID = "user_id"
        }

        public init(model: ModelPaths? = nil, fusion: FusionSettings? = nil, share: Double = 0.05, key: Key = .requestID) {
            self.model = model
            self.fusion = fusion
            self.share = share
            self.key = key
        }
    }
}
