/// The SPEC's categorical hashing (§3), identical in training and serving.
///
/// FNV-1a 64-bit (offset 14695981039346656037, prime 1099511628211) over the UTF-8 bytes of
/// `field + "\u{1F}" + value`, modulo `buckets`. Integers hash as their plain decimal text, so
/// JSON `42` and CSV `42` land in the same row. Other trainers reproduce it from this description.
public enum FeatureHasher {
    public static let offsetBasis: UInt64 = 14_695_981_039_346_656_037
    public static let prime: UInt64 = 1_099_511_628_211

    @inlinable
    public static func fnv1a<S: Sequence>(_ bytes: S, seed: UInt64 = offsetBasis) -> UInt64 where S.Element == UInt8 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h &*= prime
        }
        return h
    }

    /// The hash state after `field + "\u{1F}"`; reuse it for every value of the field.
    @inlinable
    public static func fieldSeed(_ field: String) -> UInt64 {
        fnv1a(CollectionOfOne(UInt8(0x1F)), seed: fnv1a(field.utf8))
    }

    /// Row of `emb.<field>` for a string value.
    @inlinable
    public static func bucket(field: String, value: String, buckets: Int) -> Int {
        bucket(seed: fieldSeed(field), value: value, buckets: buckets)
    }

    @inlinable
    public static func bucket(seed: UInt64, value: String, buckets: Int) -> Int {
        var v = value
        let h = v.withUTF8 { fnv1a($0, seed: seed) }
        return Int(h % UInt64(buckets))
    }

    @inlinable
    public static func bucket(seed: UInt64, value: Int64, buckets: Int) -> Int {
        bucket(seed: seed, value: String(value), buckets: buckets)
    }
}
