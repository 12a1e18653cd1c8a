import TwinTower

/// A string key mapped to a fraction in [0, 1) that is the same in every process, replica and
/// restart (no per-process seed), and uniform even for keys that differ in one trailing digit.
///
/// Why a finaliser: FNV-1a alone is a poor fraction for short sequential keys. Its top bits
/// barely move between `u1` and `u2`, so comparing them with a share routed 0 % of `u1…u1000` to a
/// 10 % canary (issue #27). The splitmix64 finaliser spreads every input bit over all 64 output
/// bits. The request-log sampler and the canary router both use this one function; they stay
/// independent of each other because the router hashes the key behind a prefix (`arm␟`).
public enum StableFraction {
    /// FNV-1a 64 of `key`'s UTF-8 bytes, splitmix64-finalised, top 53 bits as a fraction.
    public static func of(_ key: String) -> Double {
        var h = FeatureHasher.fnv1a(key.utf8)
        h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        return Double(h >> 11) * 0x1p-53
    }
}
