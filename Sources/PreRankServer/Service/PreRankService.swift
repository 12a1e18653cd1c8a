import Dispatch
import StrictJSON
import TwinTower

/// The `/prerank` body → answer path, shared by `prerank score` and `POST /prerank` so both give
/// the same answer for the same body (the server adds only transport and admission control).
public enum PreRankService {
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

    /// Decodes, scores and encodes one body.
    ///
    /// - parameters:
    ///   - receivedAt: monotonic nanoseconds when the request was received; `took_ms` and the
    ///     budget count from there.
    ///   - budgetMs: the time budget (`nil`: none, as for the offline `score` verb).
    ///   - arm: the serving arm's name, written into the answer when set (A/B, canary).
    public static func handle(body: [UInt8], bundle: ServingBundle, options: ScoringOptions,
                              receivedAt: UInt64 = DispatchTime.now().uptimeNanoseconds,
                              budgetMs: Double? = nil, arm: String? = nil) throws(APIError) -> Outcome {
        try handle(body: body, options: options, receivedAt: receivedAt, budgetMs: budgetMs) { _ in (bundle, arm) }
    }

    /// As above, with the serving arm chosen per request (canary / A-B by request or user id).
    public static func handle(body: [UInt8], options: ScoringOptions, receivedAt: UInt64, budgetMs: Double?,
                              select: (PreRankRequest) -> (ServingBundle, String?)) throws(APIError) -> Outcome {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let request = try RequestDecoder.decode(body, maxCandidates: options.maxCandidates)
        let (bundle, arm) = select(request)
        let t1 = DispatchTime.now().uptimeNanoseconds
        return try handle(request: request, bundle: bundle, arm: arm, parseNanos: t1 - t0, options: options,
                          receivedAt: receivedAt, budgetMs: budgetMs)
    }

    /// Scores and encodes a request already decoded (the server decodes before admission, to
    /// know the request's cost in worker slots).
    ///
    /// - parameters:
    ///   - parseNanos: what decoding took, reported in the outcome.
    public static func handle(request: PreRankRequest, bundle: ServingBundle, arm: String?, parseNanos: UInt64,
                              options: ScoringOptions, receivedAt: UInt64, budgetMs: Double?) throws(APIError) -> Outcome {
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
