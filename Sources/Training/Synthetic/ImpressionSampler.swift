import Foundation
import TwinTower

/// Logits of the three stages *without* their intercepts (docs/GENERATOR.md §2).
public struct StageLogits: Sendable, Equatable {
    /// `z_click`: logit of P(click).
    public var click: Double
    /// `z_cart`: logit of P(cart | click).
    public var cart: Double
    /// `z_order`: logit of P(order | cart).
    public var order: Double
}

/// One impression of a request: the shown item, its relevance to the query, the true stage
/// probabilities and the sampled progressive labels.
public struct Impression: Sendable, Equatable {
    /// Item index into `World.items`.
    public var item: Int
    /// 0 unrelated category, 1 related category, 2 query's category, 3 also matches the query's
    /// brand or price intent.
    public var relevance: Int
    /// P(click).
    public var truthClick: Double
    /// P(click ∧ cart) = P(click) · P(cart | click).
    public var truthCart: Double
    /// P(click ∧ cart ∧ order).
    public var truthOrder: Double
    public var click: Bool
    public var cart: Bool
    public var order: Bool
}

/// One sampled request: who searched what, and what was shown.
public struct SampledRequest: Sendable {
    /// 1-based `request_id`.
    public var requestID: Int
    /// User index into `World.users`.
    public var user: Int
    /// Query index into `World.queries`.
    public var query: Int
    /// Whether the request belongs to test.csv (a hash of seed and request id, `< testFraction`).
    public var isTest: Bool
    public var impressions: [Impression]
}

/// Streams requests of a `World`. Request `r` draws only from its own random stream
/// `(seed, requests, r)`, so it is the same whatever the total number of requests.
public struct ImpressionSampler: Sendable {
    public let world: World

    // Relevance effect R[rel] on the shared match signal.
    static let relevanceEffect: [Double] = [-2.0, -0.9, 0.0, 0.5]
    // Weight of the user·item taste dot product in the shared match signal.
    static let tasteWeight = 0.5

    /// Per-item stamp of the request that last drew it (duplicate check in O(1)).
    private var stamp: [UInt32]
    private var stampValue: UInt32 = 0

    public init(world: World) {
        self.world = world
        stamp = [UInt32](repeating: 0, count: world.items.count)
    }

    /// Whether request index `r` (0-based) goes to test.csv.
    public static func isTest(requestIndex r: Int, seed: UInt64, testFraction: Double) -> Bool {
        let h = SplitMix64.mix(seed ^ SplitMix64.mix(RandomStream.split.rawValue &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(r)))
        return Double(h >> 11) * 0x1p-53 < testFraction
    }

    /// Samples request index `r` (0-based; `request_id` is `r + 1`) into `request`, reusing its
    /// impression buffer.
    public mutating func sample(requestIndex r: Int, into request: inout SampledRequest) {
        var rng = SplitMix64(seed: world.config.seed, stream: RandomStream.requests.rawValue, index: UInt64(r))
        request.requestID = r + 1
        request.isTest = ImpressionSampler.isTest(requestIndex: r, seed: world.config.seed,
                                                  testFraction: world.config.testFraction)
        drawRequest(&rng, into: &request, intercepts: world.intercepts, withLabels: true)
    }

    /// A fresh request buffer sized for the world's candidate count.
    public func makeRequest() -> SampledRequest {
        var request = SampledRequest(requestID: 0, user: 0, query: 0, isTest: false, impressions: [])
        request.impressions.reserveCapacity(world.config.candidates)
        return request
    }

    /// Draws user, query and candidates; fills impressions with truths (and labels when asked).
    mutating func drawRequest(_ rng: inout SplitMix64, into request: inout SampledRequest,
                              intercepts b: Intercepts, withLabels: Bool) {
        let u = world.userSampler.sample(&rng)
        let c = drawCategory(user: u, &rng)
        let q = world.queriesByCategory[c][world.querySamplerByCategory[c].sample(&rng)]
        request.user = u
        request.query = q
        request.impressions.removeAll(keepingCapacity: true)

        stampValue &+= 1
        if stampValue == 0 {   // wrapped: reset stamps
            for i in stamp.indices { stamp[i] = 0 }
            stampValue = 1
        }
        let config = world.config
        for _ in 0..<config.candidates {
            let i = drawCandidate(queryCategory: c, &rng)
            let rel = relevance(query: q, item: i)
            let z = logits(user: u, query: q, item: i, relevance: rel)
            let pClick = sigmoid(b.click + z.click)
            let pCartGivenClick = sigmoid(b.cart + z.cart)
            let pOrderGivenCart = sigmoid(b.order + z.order)
            let pCart = pClick * pCartGivenClick
            let pOrder = pCart * pOrderGivenCart
            // Three uniforms per impression whatever the outcome (fixed stream consumption).
            let u1 = rng.nextDouble(), u2 = rng.nextDouble(), u3 = rng.nextDouble()
            var click = false, cart = false, order = false
            if withLabels {
                click = u1 < pClick
                cart = click && u2 < pCartGivenClick
                order = cart && u3 < pOrderGivenCart
            }
            request.impressions.append(Impression(
                item: i, relevance: rel,
                truthClick: pClick, truthCart: pCart, truthOrder: pOrder,
                click: click, cart: cart, order: order))
        }
    }

    /// The query category of a request: P(c | u) ∝ popularity_c · exp(<t_u, e_c>).
    private func drawCategory(user u: Int, _ rng: inout SplitMix64) -> Int {
        let K = world.tasteDim
        let C = world.categoryCount
        return world.userTaste.withUnsafeBufferPointer { taste in
            world.categoryVector.withUnsafeBufferPointer { cv in
                var total = 0.0
                var weights = [Double](repeating: 0, count: C)
                for c in 0..<C {
                    var s = 0.0
                    for k in 0..<K { s += taste[u * K + k] * cv[c * K + k] }
                    let w = world.categoryPopularity[c] * Foundation.exp(s)
                    weights[c] = w
                    total += w
                }
                var x = rng.nextDouble() * total
                for c in 0..<C {
                    x -= weights[c]
                    if x < 0 { return c }
                }
                return C - 1
            }
        }
    }

    /// One candidate item not yet shown in this request.
    private mutating func drawCandidate(queryCategory c: Int, _ rng: inout SplitMix64) -> Int {
        let config = world.config
        var attempts = 0
        while true {
            let i: Int
            if attempts >= 16 {
                i = rng.nextInt(below: world.items.count)        // crowded: fall back to uniform
            } else {
                let roll = rng.nextDouble()
                if roll < config.sameCategoryShare {
                    i = world.itemsByCategory[c][world.itemSamplerByCategory[c].sample(&rng)]
                } else if roll < config.sameCategoryShare + config.relatedCategoryShare,
                          !world.relatedCategories[c].isEmpty {
                    let related = world.relatedCategories[c]
                    let rc = related[rng.nextInt(below: related.count)]
                    i = world.itemsByCategory[rc][world.itemSamplerByCategory[rc].sample(&rng)]
                } else {
                    i = world.itemSamplerAll.sample(&rng)
                }
            }
            if stamp[i] != stampValue {
                stamp[i] = stampValue
                return i
            }
            attempts += 1
        }
    }

    /// Relevance level 0…3 of item `i` for query `q`.
    public func relevance(query q: Int, item i: Int) -> Int {
        let query = world.queries[q]
        let item = world.items[i]
        if item.category == query.category {
            let match: Bool
            if let brand = query.brand {
                match = item.brand == brand
            } else {
                switch query.intent {
                case .cheap: match = item.logPriceRel < -0.1
                case .premium: match = item.logPriceRel > 0.1 && item.rating >= 4.0
                case .neutral: match = item.rating >= 4.2
                }
            }
            return match ? 3 : 2
        }
        return world.relatedCategories[query.category].contains(item.category) ? 1 : 0
    }

    /// The stage logits of user `u` shown item `i` for query `q`, without intercepts:
    ///
    ///     m       = 0.5·<t_u, v_i> + R[rel]
    ///     ps      = ps_u + shift(intent)                       (cheap +0.8, premium −0.7)
    ///     g       = rating_i − 4
    ///     z_click = m       + a_u + q_i       − 0.3·ps·x_i + 0.2·g
    ///     z_cart  = 0.6·m   + 0.4·b_u         − 0.7·ps·x_i + 0.9·g + 0.5·g·[premium]
    ///     z_order = 0.4·m   + b_u + c_i       − 1.4·ps·x_i + 0.3·g + A[region_u, cat_i]
    public func logits(user u: Int, query q: Int, item i: Int) -> StageLogits {
        logits(user: u, query: q, item: i, relevance: relevance(query: q, item: i))
    }

    func logits(user u: Int, query q: Int, item i: Int, relevance rel: Int) -> StageLogits {
        let K = world.tasteDim
        let user = world.users[u]
        let item = world.items[i]
        let query = world.queries[q]
        var dot = 0.0
        world.userTaste.withUnsafeBufferPointer { t in
            world.itemVector.withUnsafeBufferPointer { v in
                let tu = u * K, vi = i * K
                for k in 0..<K { dot += t[tu + k] * v[vi + k] }
            }
        }
        let m = ImpressionSampler.tasteWeight * dot + ImpressionSampler.relevanceEffect[rel]
        let shift: Double
        switch query.intent {
        case .neutral: shift = 0
        case .cheap: shift = 0.8
        case .premium: shift = -0.7
        }
        let ps = user.priceSensitivity + shift
        let x = item.logPriceRel
        let g = item.rating - 4.0
        let premium = query.intent == .premium ? 1.0 : 0.0
        let avail = world.availability[user.region * world.categoryCount + item.category]
        return StageLogits(
            click: m + user.clickiness + item.quality - 0.3 * ps * x + 0.2 * g,
            cart: 0.6 * m + 0.4 * user.buyerPropensity - 0.7 * ps * x + 0.9 * g + 0.5 * g * premium,
            order: 0.4 * m + user.buyerPropensity + item.conversion - 1.4 * ps * x + 0.3 * g + avail)
    }
}

@inline(__always)
func sigmoid(_ z: Double) -> Double { 1 / (1 + Foundation.exp(-z)) }
