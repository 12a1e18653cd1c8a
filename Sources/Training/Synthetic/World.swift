import Foundation
import TwinTower

/// Price intent of a query, carried by a modifier term (`cheap`, `budget` / `premium`, `luxury`).
public enum PriceIntent: Int, Sendable, Codable {
    case neutral = 0
    case cheap = 1
    case premium = 2
}

/// One user: observable attributes plus latent traits (taste vector kept in `World.userTaste`).
public struct SyntheticUser: Sendable, Equatable {
    /// Index into `World.segmentNames` (`new`, `regular`, `silver`, `gold`, `vip`).
    public var segment: Int
    /// Index into `World.genderNames` (`f`, `m`, `u`).
    public var gender: Int
    /// Index into `World.regionNames`.
    public var region: Int
    public var age: Int
    /// Latent: how strongly log price relative to the category median lowers each stage's logit.
    public var priceSensitivity: Double
    /// Latent: click propensity (segment effect + id idiosyncrasy).
    public var clickiness: Double
    /// Latent: purchase propensity (segment + age effect + id idiosyncrasy).
    public var buyerPropensity: Double
    /// Relative request frequency.
    public var activity: Double
}

/// One catalog item: observable attributes plus latent traits (vector in `World.itemVector`).
public struct SyntheticItem: Sendable, Equatable {
    public var id: Int64
    public var category: Int
    /// Global brand index (`World.brandNames`); brands belong to one category.
    public var brand: Int
    /// Price, rounded to cents (what items.csv holds).
    public var price: Double
    /// Rating 1.0–5.0, rounded to one decimal (what items.csv holds).
    public var rating: Double
    /// `ln(price) − μ_category`: price relative to the category's typical price.
    public var logPriceRel: Double
    /// Latent: click appeal (brand quality + id idiosyncrasy).
    public var quality: Double
    /// Latent: conversion appeal after cart (id idiosyncrasy).
    public var conversion: Double
    /// Relative chance of being a candidate.
    public var popularity: Double
}

/// One query: a category intent, a price intent, maybe a brand, and the words that say so.
public struct SyntheticQuery: Sendable, Equatable {
    public var category: Int
    public var intent: PriceIntent
    /// Global brand index the query names, if any.
    public var brand: Int?
    public var popularity: Double
}

/// The latent world of `prerank generate`: categories, brands, users, items, queries and the
/// calibrated stage intercepts. Built deterministically from a `WorldConfig`; only these tables
/// are held in memory, impressions are streamed by `ImpressionSampler`.
public struct World: Sendable {
    public static let segmentNames = ["new", "regular", "silver", "gold", "vip"]
    public static let genderNames = ["f", "m", "u"]

    public let config: WorldConfig
    /// Width of taste vectors (`config.tasteDim`).
    public let tasteDim: Int

    // Categories.
    public let categoryCount: Int
    /// Category values of `query_category` and `item_category` (`c0`, `c1`, …).
    public let categoryNames: [String]
    /// The head noun a query of the category contains (`shoes`, `lamp`, …).
    public let categoryNouns: [String]
    /// Latent category vectors, `categoryCount × tasteDim`, row-major.
    public let categoryVector: [Double]
    /// μ_c: mean log price of the category.
    public let categoryLogPrice: [Double]
    public let categoryPopularity: [Double]
    /// The two categories nearest to each category (by latent vector), the source of
    /// relevance-1 candidates.
    public let relatedCategories: [[Int]]

    // Brands.
    public let brandNames: [String]
    public let brandCategory: [Int]
    public let brandsByCategory: [[Int]]

    // Users.
    public let users: [SyntheticUser]
    /// Latent user taste vectors, `users.count × tasteDim`.
    public let userTaste: [Double]
    public let regionNames: [String]

    // Items.
    public let items: [SyntheticItem]
    /// Latent item vectors, `items.count × tasteDim`.
    public let itemVector: [Double]
    public let itemsByCategory: [[Int]]

    // Queries.
    public let queries: [SyntheticQuery]
    public let queryTerms: [[String]]
    public let queriesByCategory: [[Int]]

    /// Latent: region × category availability (delivery), `regions × categoryCount`; order stage only.
    public let availability: [Double]

    /// Stage intercepts solved so the mean true probabilities hit the config's targets.
    public internal(set) var intercepts: Intercepts

    // Sampling tables.
    let userSampler: AliasTable
    let itemSamplerByCategory: [AliasTable]
    let itemSamplerAll: AliasTable
    let querySamplerByCategory: [AliasTable]

    /// Builds and calibrates the world. Throws `SyntheticError` if the config is invalid.
    public init(config: WorldConfig) throws {
        try config.validate()
        self.config = config
        let K = config.tasteDim
        tasteDim = K
        let C = config.effectiveCategories
        categoryCount = C
        let seed = config.seed

        // Shared attribute effects (segment / gender / region / age directions in taste space,
        // availability) come from one stream.
        var attr = SplitMix64(seed: seed, stream: RandomStream.attributes.rawValue)
        let segmentVec = (0..<World.segmentNames.count * K).map { _ in attr.nextGaussian(mean: 0, sd: 0.35) }
        var genderVec = (0..<World.genderNames.count * K).map { _ in attr.nextGaussian(mean: 0, sd: 0.35) }
        for k in 0..<K { genderVec[2 * K + k] = 0 }   // "u" (unknown) carries no taste
        let regionVec = (0..<config.regions * K).map { _ in attr.nextGaussian(mean: 0, sd: 0.30) }
        let ageDir = (0..<K).map { _ in attr.nextGaussian(mean: 0, sd: 0.30) }
        availability = (0..<config.regions * C).map { _ in attr.nextGaussian(mean: 0, sd: 0.40) }
        let regionWeights = (0..<config.regions).map { _ in exp(attr.nextGaussian(mean: 0, sd: 0.5)) }
        regionNames = (0..<config.regions).map { r in config.regions <= 100 ? "r" + (r < 10 ? "0\(r)" : "\(r)") : "r\(r)" }

        // Names: brands and descriptor words are unique pseudo-words.
        var names = NameMaker(seed: seed)

        // Categories.
        var cr = SplitMix64(seed: seed, stream: RandomStream.categories.rawValue)
        var catVec = [Double](repeating: 0, count: C * K)
        var catLogPrice = [Double](repeating: 0, count: C)
        var catPop = [Double](repeating: 0, count: C)
        var catNames: [String] = []
        var catNouns: [String] = []
        var descriptors: [[String]] = []
        for c in 0..<C {
            for k in 0..<K { catVec[c * K + k] = cr.nextGaussian(mean: 0, sd: 0.6) }
            catLogPrice[c] = log(8.0) + cr.nextDouble() * log(300.0 / 8.0)
            catPop[c] = exp(cr.nextGaussian(mean: 0, sd: 0.7))
            catNames.append("c\(c)")
            let noun = NameMaker.nouns[c % NameMaker.nouns.count]
            catNouns.append(c < NameMaker.nouns.count ? noun : "\(noun)\(c / NameMaker.nouns.count + 1)")
            descriptors.append((0..<6).map { _ in names.unique() })
        }
        categoryVector = catVec
        categoryLogPrice = catLogPrice
        categoryPopularity = catPop
        categoryNames = catNames
        categoryNouns = catNouns
        relatedCategories = (0..<C).map { c in
            let others = (0..<C).filter { $0 != c }
            let sims = others.map { o -> (Int, Double) in
                var s = 0.0
                for k in 0..<K { s += catVec[c * K + k] * catVec[o * K + k] }
                return (o, s)
            }
            return sims.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(2).map(\.0)
        }
        let categorySampler = AliasTable(weights: catPop)

        // Brands: `brandsPerCategory` per category, with a price tier and a quality.
        var br = SplitMix64(seed: seed, stream: RandomStream.brands.rawValue)
        let B = C * config.brandsPerCategory
        var bNames: [String] = []
        var bCat: [Int] = []
        var bVec = [Double](repeating: 0, count: B * K)
        var bTier = [Double](repeating: 0, count: B)
        var bQuality = [Double](repeating: 0, count: B)
        var bPop = [Double](repeating: 0, count: B)
        var bByCat = [[Int]](repeating: [], count: C)
        for b in 0..<B {
            let c = b / config.brandsPerCategory
            bNames.append(names.unique())
            bCat.append(c)
            bByCat[c].append(b)
            for k in 0..<K { bVec[b * K + k] = br.nextGaussian(mean: 0, sd: 0.4) }
            bTier[b] = br.nextGaussian()
            bQuality[b] = br.nextGaussian()
            bPop[b] = exp(br.nextGaussian(mean: 0, sd: 1.0))
        }
        brandNames = bNames
        brandCategory = bCat
        brandsByCategory = bByCat
        let brandSamplerByCategory = bByCat.map { AliasTable(weights: $0.map { bPop[$0] }) }

        // Users.
        var ur = SplitMix64(seed: seed, stream: RandomStream.users.rawValue)
        let segmentShare = [0.20, 0.40, 0.20, 0.13, 0.07]
        let segmentPriceSens = [1.2, 1.0, 0.8, 0.5, 0.2]
        let segmentClick = [0.15, 0.0, 0.0, 0.05, 0.10]
        let segmentBuy = [-0.6, -0.1, 0.1, 0.35, 0.6]
        let segmentSampler = AliasTable(weights: segmentShare)
        let genderSampler = AliasTable(weights: [0.48, 0.42, 0.10])
        let regionSampler = AliasTable(weights: regionWeights)
        var us: [SyntheticUser] = []
        us.reserveCapacity(config.users)
        var taste = [Double](repeating: 0, count: config.users * K)
        for u in 0..<config.users {
            let s = segmentSampler.sample(&ur)
            let g = genderSampler.sample(&ur)
            let r = regionSampler.sample(&ur)
            let age = Int(min(80, max(16, ur.nextGaussian(mean: 36, sd: 12).rounded())))
            let ageZ = Double(age - 36) / 12
            for k in 0..<K {
                taste[u * K + k] = segmentVec[s * K + k] + genderVec[g * K + k] + regionVec[r * K + k]
                    + ageZ * ageDir[k] + ur.nextGaussian(mean: 0, sd: 0.25)
            }
            us.append(SyntheticUser(
                segment: s, gender: g, region: r, age: age,
                priceSensitivity: segmentPriceSens[s] - 0.01 * Double(age - 36) + ur.nextGaussian(mean: 0, sd: 0.2),
                clickiness: segmentClick[s] + ur.nextGaussian(mean: 0, sd: 0.35),
                buyerPropensity: segmentBuy[s] + 0.012 * Double(age - 36) + ur.nextGaussian(mean: 0, sd: 0.35),
                activity: exp(ur.nextGaussian(mean: 0, sd: 0.8))))
        }
        users = us
        userTaste = taste
        userSampler = AliasTable(weights: us.map(\.activity))

        // Items: ids ascending but not contiguous (100000 + 3i + {0,1,2}).
        var ir = SplitMix64(seed: seed, stream: RandomStream.items.rawValue)
        var its: [SyntheticItem] = []
        its.reserveCapacity(config.items)
        var iVec = [Double](repeating: 0, count: config.items * K)
        var iByCat = [[Int]](repeating: [], count: C)
        for i in 0..<config.items {
            let c = i < C ? i : categorySampler.sample(&ir)
            let b = bByCat[c][brandSamplerByCategory[c].sample(&ir)]
            let id = Int64(100_000 + 3 * i + ir.nextInt(below: 3))
            let logPrice = catLogPrice[c] + 0.35 * bTier[b] + ir.nextGaussian(mean: 0, sd: 0.35)
            let price = max(0.5, (exp(logPrice) * 100).rounded() / 100)
            let rawRating = 3.9 + 0.45 * bQuality[b] + ir.nextGaussian(mean: 0, sd: 0.35)
            let rating = (min(5, max(1, rawRating)) * 10).rounded() / 10
            for k in 0..<K {
                iVec[i * K + k] = catVec[c * K + k] + bVec[b * K + k] + ir.nextGaussian(mean: 0, sd: 0.3)
            }
            its.append(SyntheticItem(
                id: id, category: c, brand: b, price: price, rating: rating,
                logPriceRel: log(price) - catLogPrice[c],
                quality: 0.2 * bQuality[b] + ir.nextGaussian(mean: 0, sd: 0.3),
                conversion: ir.nextGaussian(mean: 0, sd: 0.3),
                popularity: exp(ir.nextGaussian(mean: 0, sd: 0.8)) * bPop[b].squareRoot()))
            iByCat[c].append(i)
        }
        items = its
        itemVector = iVec
        itemsByCategory = iByCat
        itemSamplerByCategory = iByCat.map { list in AliasTable(weights: list.map { its[$0].popularity }) }
        itemSamplerAll = AliasTable(weights: its.map(\.popularity))

        // Queries: noun + 1–2 descriptors + price modifier + maybe brand + maybe a generic word.
        var qr = SplitMix64(seed: seed, stream: RandomStream.queries.rawValue)
        var qs: [SyntheticQuery] = []
        var qTerms: [[String]] = []
        var qByCat = [[Int]](repeating: [], count: C)
        for q in 0..<config.queries {
            let c = q < C ? q : categorySampler.sample(&qr)
            let roll = qr.nextDouble()
            let intent: PriceIntent = roll < 0.20 ? .cheap : (roll < 0.32 ? .premium : .neutral)
            let brand: Int? = qr.nextDouble() < 0.20 ? bByCat[c][brandSamplerByCategory[c].sample(&qr)] : nil
            var terms = [catNouns[c]]
            let d0 = qr.nextInt(below: descriptors[c].count)
            terms.append(descriptors[c][d0])
            if qr.nextDouble() < 0.5 {
                let d1 = (d0 + 1 + qr.nextInt(below: descriptors[c].count - 1)) % descriptors[c].count
                terms.append(descriptors[c][d1])
            }
            switch intent {
            case .cheap: terms.append(qr.nextDouble() < 0.5 ? "cheap" : "budget")
            case .premium: terms.append(qr.nextDouble() < 0.5 ? "premium" : "luxury")
            case .neutral: break
            }
            if let brand { terms.append(bNames[brand]) }
            if qr.nextDouble() < 0.25 { terms.append(NameMaker.genericWords[qr.nextInt(below: NameMaker.genericWords.count)]) }
            qs.append(SyntheticQuery(category: c, intent: intent, brand: brand,
                                     popularity: exp(qr.nextGaussian(mean: 0, sd: 1.0))))
            qTerms.append(terms)
            qByCat[c].append(q)
        }
        queries = qs
        queryTerms = qTerms
        queriesByCategory = qByCat
        querySamplerByCategory = qByCat.map { list in AliasTable(weights: list.map { qs[$0].popularity }) }

        intercepts = Intercepts(click: 0, cart: 0, order: 0)
        intercepts = Calibration.solve(world: self)
    }

    /// The `user_id` value of user index `u` (`u1`, `u2`, …).
    public func userID(_ u: Int) -> String { "u\(u + 1)" }

    /// All distinct `query_terms` values, sorted.
    public var termVocabulary: [String] { Array(Set(queryTerms.joined())).sorted() }
}

/// Stage intercepts `b_click`, `b_cart`, `b_order` of docs/GENERATOR.md.
public struct Intercepts: Sendable, Equatable, Codable {
    public var click: Double
    public var cart: Double
    public var order: Double
    public init(click: Double, cart: Double, order: Double) {
        self.click = click
        self.cart = cart
        self.order = order
    }
}

/// Deterministic pseudo-words for brands and query descriptors.
struct NameMaker {
    static let syllables = ["ka", "lo", "mi", "ra", "ve", "to", "su", "ne", "pa", "di",
                            "zo", "ri", "ba", "ku", "fe", "yo", "ma", "ti", "no", "se",
                            "ga", "lu", "po", "xi"]
    static let nouns = ["shoes", "phone", "lamp", "sofa", "jacket", "watch", "camera", "bag",
                        "tent", "bike", "kettle", "blender", "guitar", "novel", "perfume", "lipstick",
                        "toy", "puzzle", "drill", "paint", "rug", "pillow", "mug", "laptop",
                        "tablet", "headphones", "speaker", "charger", "dress", "jeans", "shirt", "hat",
                        "wallet", "ring", "necklace", "stroller", "diaper", "dogfood", "catlitter", "plant"]
    static let genericWords = ["new", "sale", "best", "gift", "original"]
    static let reserved: Set<String> = Set(nouns + genericWords + ["cheap", "budget", "premium", "luxury"])

    var rng: SplitMix64
    var used: Set<String> = NameMaker.reserved

    init(seed: UInt64) { rng = SplitMix64(seed: seed, stream: RandomStream.names.rawValue) }

    mutating func unique() -> String {
        var length = 2
        var attempts = 0
        while true {
            var word = ""
            for _ in 0..<length { word += NameMaker.syllables[rng.nextInt(below: NameMaker.syllables.count)] }
            if used.insert(word).inserted { return word }
            attempts += 1
            if attempts % 8 == 0 { length += 1 }
        }
    }
}
