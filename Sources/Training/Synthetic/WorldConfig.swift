/// The knobs of a synthetic progressive world (`prerank generate`); see docs/GENERATOR.md.
///
/// The defaults are the demo size: about one million impressions that a trainer gets through
/// in about a minute.
public struct WorldConfig: Sendable, Equatable, Codable {
    // Size of the world.
    public var users: Int = 5_000
    public var items: Int = 20_000
    /// Distinct queries (each with one category intent and a few terms).
    public var queries: Int = 2_000
    /// Requests (one user, one query, `candidates` impressions each).
    public var requests: Int = 20_000
    /// Impressions per request (distinct items).
    public var candidates: Int = 50

    /// Master seed: the same config and seed give byte-identical files.
    public var seed: UInt64 = 1
    /// Share of requests (by request_id) written to test.csv instead of train.csv.
    public var testFraction: Double = 0.2

    // Shape of the latent world.
    public var categories: Int = 40
    public var brandsPerCategory: Int = 12
    public var regions: Int = 16
    /// Width of the latent taste vectors of users and items.
    public var tasteDim: Int = 8

    // Candidate mix: the rest of each candidate set is drawn from the whole catalog.
    /// Share of candidates drawn from the query's own category.
    public var sameCategoryShare: Double = 0.70
    /// Share drawn from the two categories nearest to the query's category.
    public var relatedCategoryShare: Double = 0.15

    // Calibration targets (means of the true probabilities over impressions).
    public var targetCTR: Double = 0.08
    /// P(cart) per impression; the paper's Shopee data has no public figure, 0.6–1 % is typical.
    public var targetCartRate: Double = 0.008
    public var targetCTCVR: Double = 0.002
    /// Requests sampled (from their own random stream) to solve the three intercepts.
    public var calibrationRequests: Int = 2_000

    public init() {}

    public init(users: Int, items: Int, queries: Int, requests: Int, candidates: Int,
                seed: UInt64, testFraction: Double = 0.2) {
        self.users = users
        self.items = items
        self.queries = queries
        self.requests = requests
        self.candidates = candidates
        self.seed = seed
        self.testFraction = testFraction
    }

    /// Number of categories actually used: never more than there are items or queries, so every
    /// category has at least one of each.
    public var effectiveCategories: Int { max(1, min(categories, items, queries)) }

    /// Total impressions the run will write (`requests × candidates`).
    public var impressions: Int { requests * candidates }

    /// Throws a `SyntheticError` naming the first bad option (`--users must be at least 1 …`).
    public func validate() throws {
        func need(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw SyntheticError(message()) }
        }
        try need(users >= 1, "--users must be at least 1 (got \(users))")
        try need(items >= 1, "--items must be at least 1 (got \(items))")
        try need(queries >= 1, "--queries must be at least 1 (got \(queries))")
        try need(requests >= 1, "--requests must be at least 1 (got \(requests))")
        try need(candidates >= 1, "--candidates must be at least 1 (got \(candidates))")
        try need(candidates <= items, "--candidates (\(candidates)) cannot exceed --items (\(items)): candidates of a request are distinct items")
        try need(users <= 100_000_000 && items <= 100_000_000 && queries <= 10_000_000,
                 "world too large: at most 100M users, 100M items, 10M queries")
        try need(requests.multipliedReportingOverflow(by: candidates).overflow == false, "--requests × --candidates overflows")
        try need(testFraction >= 0 && testFraction <= 1, "--test-fraction must be in [0, 1] (got \(testFraction))")
        try need(categories >= 1, "categories must be at least 1 (got \(categories))")
        try need(brandsPerCategory >= 1, "brandsPerCategory must be at least 1")
        try need(regions >= 1, "regions must be at least 1")
        try need(tasteDim >= 1, "tasteDim must be at least 1")
        try need(sameCategoryShare >= 0 && relatedCategoryShare >= 0 && sameCategoryShare + relatedCategoryShare <= 1,
                 "candidate shares must be non-negative and sum to at most 1")
        try need(0 < targetCTCVR && targetCTCVR < targetCartRate && targetCartRate < targetCTR && targetCTR < 1,
                 "targets must satisfy 0 < CTCVR < cart rate < CTR < 1")
        try need(calibrationRequests >= 1, "calibrationRequests must be at least 1")
    }
}

/// A bad generator option or an I/O failure, with a one-line reason.
public struct SyntheticError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
