import TwinTower

/// The columns of the generated files and the feature spec that describes them.
public enum SyntheticSchema {
    /// `tasks` of features.yaml: the progressive chain, densest first.
    public static let tasks: [TaskSpec] = [
        TaskSpec(name: "ctr", label: "click"),
        TaskSpec(name: "atcr", label: "cart"),
        TaskSpec(name: "ctcvr", label: "order"),
    ]

    /// User-query-side feature columns, in order.
    public static let userColumns = ["user_id", "segment", "gender", "region", "age", "query_terms", "query_category"]
    /// Item-side feature columns, in order (`item_id` first).
    public static let itemColumns = ["item_id", "item_category", "brand", "price", "rating"]
    /// Label columns (0/1, progressive).
    public static let labelColumns = ["click", "cart", "order"]
    /// True probabilities P(click), P(click ∧ cart), P(click ∧ cart ∧ order) of the impression.
    public static let truthColumns = ["truth_click", "truth_cart", "truth_order"]

    /// Header of train.csv / test.csv.
    public static var impressionColumns: [String] {
        ["request_id"] + userColumns + itemColumns + ["relevance"] + labelColumns + truthColumns
    }

    /// Header of items.csv.
    public static var itemCatalogColumns: [String] { itemColumns }

    /// Columns of train.csv that are not features (ids of the list, relevance, labels, truths).
    public static var nonFeatureColumns: [String] { ["request_id", "relevance"] + labelColumns + truthColumns }

    /// The feature spec of a world's files: kinds, sides, and per categorical/multi field a prime
    /// number of buckets ≥ 2 × its cardinality (for small vocabularies, the first such prime under
    /// which no two values share a bucket with the SPEC §3 hash) and an embedding width.
    public static func features(for world: World) -> [FeatureSpec] {
        let C = world.categoryCount
        func cat(_ name: String, _ side: Side, _ values: [String], dim: Int) -> FeatureSpec {
            FeatureSpec(name: name, side: side, kind: .categorical, buckets: buckets(field: name, values: values), dim: dim)
        }
        let users = world.users.count
        let items = world.items.count
        let segments = World.segmentNames
        let terms = world.termVocabulary
        return [
            FeatureSpec(name: "user_id", side: .user, kind: .categorical, buckets: nextPrime(atLeast: max(11, 2 * users)), dim: 16),
            cat("segment", .user, segments, dim: 8),
            cat("gender", .user, World.genderNames, dim: 8),
            cat("region", .user, world.regionNames, dim: 8),
            FeatureSpec(name: "age", side: .user, kind: .dense),
            FeatureSpec(name: "query_terms", side: .user, kind: .multi, buckets: buckets(field: "query_terms", values: terms), dim: 16),
            cat("query_category", .user, Array(world.categoryNames.prefix(C)), dim: 8),
            FeatureSpec(name: "item_id", side: .item, kind: .categorical, buckets: nextPrime(atLeast: max(11, 2 * items)), dim: 16),
            cat("item_category", .item, Array(world.categoryNames.prefix(C)), dim: 8),
            cat("brand", .item, world.brandNames, dim: 12),
            FeatureSpec(name: "price", side: .item, kind: .dense),
            FeatureSpec(name: "rating", side: .item, kind: .dense),
        ]
    }

    /// Smallest prime ≥ 2 × `values.count` (and ≥ 11); for up to 256 values, the first such prime
    /// (searching up to 64 of them) under which all values fall in distinct buckets.
    public static func buckets(field: String, values: [String]) -> Int {
        let first = nextPrime(atLeast: max(11, 2 * values.count))
        guard values.count <= 256 else { return first }
        let hashes = values.map { fnv1a64(field + "\u{1F}" + $0) }
        var p = first
        for _ in 0..<64 {
            if Set(hashes.map { $0 % UInt64(p) }).count == values.count { return p }
            p = nextPrime(atLeast: p + 1)
        }
        return first
    }

    /// FNV-1a 64-bit of the UTF-8 bytes (SPEC §3 hashing, before `mod buckets`).
    public static func fnv1a64(_ text: String) -> UInt64 { FeatureHasher.fnv1a(text.utf8) }

    /// Smallest prime ≥ `n`.
    public static func nextPrime(atLeast n: Int) -> Int {
        var c = max(2, n)
        while !isPrime(c) { c += 1 }
        return c
    }

    static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 || n % 3 == 0 { return false }
        var f = 5
        while f * f <= n {
            if n % f == 0 || n % (f + 2) == 0 { return false }
            f += 6
        }
        return true
    }
}
