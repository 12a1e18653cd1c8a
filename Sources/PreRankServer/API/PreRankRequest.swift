import TwinTower

/// A decoded `POST /prerank` body (SPEC §2).
///
/// `user` and `query` are both user-query-side feature maps; they are kept apart so that errors
/// can name `user.age` or `query.query_terms`. Unknown features are carried along and ignored by
/// the encoder.
public struct PreRankRequest: Sendable, Equatable {
    public var requestID: String?
    /// The body gave `request_id` as a JSON integer (its canonical decimal text is in
    /// `requestID`): the answer echoes it as an integer, as it came.
    public var requestIDIsInteger = false
    public var user: [String: FeatureValue]
    public var query: [String: FeatureValue]
    /// `nil` means "score the whole index".
    public var candidates: [Int64]?
    /// Relevance level 0...3 per candidate, same length as `candidates`.
    public var relevance: [Double]?
    public var k: Int?
    public var fusion: FusionOverride?
    public var debug: Bool

    public init(requestID: String? = nil, user: [String: FeatureValue] = [:], query: [String: FeatureValue] = [:],
                candidates: [Int64]? = nil, relevance: [Double]? = nil, k: Int? = nil,
                fusion: FusionOverride? = nil, debug: Bool = false) {
        self.requestID = requestID
        self.user = user
        self.query = query
        self.candidates = candidates
        self.relevance = relevance
        self.k = k
        self.fusion = fusion
        self.debug = debug
    }
}

/// Per-request fusion weights; each is optional and falls back to config.
public struct FusionOverride: Sendable, Equatable {
    public var alpha: Double?
    public var beta: Double?
    public var gamma: Double?
    public init(alpha: Double? = nil, beta: Double? = nil, gamma: Double? = nil) {
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
    }
}
