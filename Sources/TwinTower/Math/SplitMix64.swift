import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014): the generator behind every random draw of
/// `prerank generate`, model initialisation and training.
///
/// Written out here, rather than using `SystemRandomNumberGenerator` or the standard library's
/// `random(in:using:)` helpers, so that a seed gives the same bytes on every platform and every
/// Swift version: the state update, the output mix and the conversions to `Double`, bounded
/// integers and Gaussians below are all fixed by this file.
///
/// Streams: each table of the world and each request draws from its own generator, derived from
/// `(seed, stream, index)` by `init(seed:stream:index:)`, so one request's draws never depend on
/// how many requests came before it (and a longer run extends a shorter one).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    /// A generator whose internal state starts at `seed` (the reference SplitMix64 seeding).
    public init(seed: UInt64) { state = seed }

    /// An independent generator for one `stream` (a table or purpose) and `index` (e.g. a
    /// request number) under a master `seed`.
    public init(seed: UInt64, stream: UInt64, index: UInt64 = 0) {
        state = SplitMix64.mix(seed ^ SplitMix64.mix(stream &* 0x9E37_79B9_7F4A_7C15 &+ SplitMix64.mix(index &+ 1)))
    }

    /// The SplitMix64 output function (a strong 64-bit finaliser), usable as a hash.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// Uniform in [0, 1), 53 random bits.
    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform in [0, n) for n ≥ 1 (Lemire's multiply-and-reject, unbiased).
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0, "nextInt(below:) needs n > 0")
        let bound = UInt64(n)
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = next().multipliedFullWidth(by: bound)
            }
        }
        return Int(product.high)
    }

    /// Standard normal draw (Box–Muller; consumes two 64-bit outputs).
    public mutating func nextGaussian() -> Double {
        let u1 = 1.0 - nextDouble()          // (0, 1]: log is finite
        let u2 = nextDouble()
        return (-2.0 * Foundation.log(u1)).squareRoot() * Foundation.cos(2.0 * Double.pi * u2)
    }

    /// Normal draw with the given mean and standard deviation.
    public mutating func nextGaussian(mean: Double, sd: Double) -> Double {
        mean + sd * nextGaussian()
    }
}

