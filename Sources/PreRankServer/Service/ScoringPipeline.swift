import Dispatch
import StrictJSON
import TwinTower

/// The `/prerank` body → answer path (decode → select the arm → score → encode), shared by
/// `prerank score` and `POST /prerank` so both give the same answer for the same body (the
/// server adds only transport and admission control between `prepare` and `score`).
public enum ScoringPipeline {
    /// Engine options from config (SPEC §5).
    public static func options(from config: PreRankConfig, parallelism: Int = 1) -> ScoringOptions {
        var options = ScoringOptions(defaultK: config.topk.default, maxK: config.topk.max, maxCandidates: config.server.maxCandidates,
                                     fusion: config.fusion.policy, allowFusionOverride: config.fusion.allowRequestOverride,
                                     parallelism: parallelism, rescoreDepth: config.topk.rescoreDepth)
        options.allowWholeIndex = config.topk.allowWholeIndex
        options.rejectUnknownFeatures = config.request.unknownFeatures == .reject
        return options
    }

    /// Time kept back from the budget for encoding the answer, so a partial answer still leaves
    /// before the budget: a tenth of the budget, at most 5 ms.
    public static func encodeReserveNanos(budgetMs: Double) -> UInt64 {
        UInt64(min(5.0, budgetMs / 10) * 1_000_000)
    }

    /// Everything one request produced, for the response, metrics, access and request logs.
    public struct Outcome: Sendable {
        public var body: [UInt8]
        public var request: PreRankRequest
        public var result: ScoringResult
        public var response: PreRankResponse
        public var parseNanos: UInt64
        public var encodeNanos: UInt64
        public var arm: String?
        public var bundle: ServingBundle
        /// The request's features against the model's (metrics, warnings, `debug`).
        public var features: FeatureAudit
    }

    /// A request decoded and assigned to an arm: what admission needs to know its cost, and what
    /// `score` needs to answer it.
    public struct Prepared: Sendable {
        public var request: PreRankRequest
        public var bundle: ServingBundle
        /// The serving arm's name, written into the answer when set (A/B, canary).
        public var arm: String?
        /// What decoding and arm selection took.
        public var parseNanos: UInt64
    }

    /// Decodes one body and picks its serving arm. The server runs this before admission (the
    /// request's cost in worker slots depends on it) and `score` on a worker; `prerank score`
    /// runs both at once (`handle`), so the two cannot drift apart.
    ///
    /// - parameters:
    ///   - select: the arm for a decoded request (canary / A-B by request or user id).
    public static func prepare(body: [UInt8], maxCandidates: Int,
                               select: (PreRankRequest) -> (ServingBundle, String?)) throws(APIError) -> Prepared {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let request = try RequestDecoder.decode(body, maxCandidates: maxCandidates)
        let (bundle, arm) = select(request)
        return Prepared(request: request, bundle: bundle, arm: arm, parseNanos: DispatchTime.now().uptimeNanoseconds - t0)
    }

    /// Decodes, scores and encodes one body against one bundle (the offline `score` verb).
    ///
    /// - parameters:
    ///   - receivedAt: monotonic nanoseconds when the request was received; `took_ms` and the
    ///     budget count from there.
    ///   - budgetMs: the time budget (`nil`: none, as for the offline `score` verb).
    ///   - arm: the serving arm's name, written into the answer when set (A/B, canary).
    public static func handle(body: [UInt8], bundle: ServingBundle, options: ScoringOptions,
                              receivedAt: UInt64 = DispatchTime.now().uptimeNanoseconds,
                              budgetMs: Double? = nil, arm: String? = nil) throws(APIError) -> Outcome {
        let prepared = try prepare(body: body, maxCandidates: options.maxCandidates) { _ in (bundle, arm) }
        return try score(prepared, options: options, receivedAt: receivedAt, budgetMs: budgetMs)
    }

    /// Scores and encodes a prepared request with its arm's options.
    public static func score(_ prepared: Prepared, options: ScoringOptions, receivedAt: UInt64,
                             budgetMs: Double?) throws(APIError) -> Outcome {
        let (request, bundle, arm, parseNanos) = (prepared.request, prepared.bundle, prepared.arm, prepared.parseNanos)
        let userFields = bundle.model.spec.fields(of: .user)
        let features = FeatureAudit.of(request, fields: userFields)
        if options.rejectUnknownFeatures, let error = features.rejection(modelVersion: bundle.version, known: userFields) { throw error }
        var deadline: UInt64? = nil
        if let budgetMs {
            deadline = receivedAt + UInt64(budgetMs * 1_000_000) - encodeReserveNanos(budgetMs: budgetMs)
        }
        let result = try ScoringEngine.score(request, bundle: bundle, options: options, deadline: deadline)
        let t2 = DispatchTime.now().uptimeNanoseconds
        let names = bundle.model.taskNames
        let items = result.items.map { ScoredItem($0, taskNames: request.debug ? names : nil) }
        var response = PreRankResponse(requestID: request.requestID, modelVersion: bundle.version, partial: result.partial,
                                       tookMs: 0, items: items, unknownIDs: result.unknownIDs, arm: arm)
        response.requestIDIsInteger = request.requestIDIsInteger
        if request.debug { response.features = features }
        response.tookMs = Double(DispatchTime.now().uptimeNanoseconds - receivedAt) / 1e6
        let encoded = ResponseEncoder.encode(response)
        let t3 = DispatchTime.now().uptimeNanoseconds
        return Outcome(body: encoded, request: request, result: result, response: response,
                       parseNanos: parseNanos, encodeNanos: t3 - t2, arm: arm, bundle: bundle, features: features)
    }
}
