#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Fusion

/// Limits and defaults the engine applies to every request (from config §5).
public struct ScoringOptions: Sendable, Equatable {
    /// Active processors: the default split of large requests (whole index, ≥ 50k candidates).
    public static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    public var defaultK: Int
    public var maxK: Int
    public var maxCandidates: Int
    public var fusion: FusionPolicy
    public var allowFusionOverride: Bool
    /// Requests with at least this many candidates are split across `parallelism` threads.
    public var parallelThreshold: Int
    public var parallelism: Int
    /// Whether a request without `candidates` scores the whole index (config
    /// `topk.allow_whole_index`); when false such a request is a 400.
    public var allowWholeIndex: Bool = true
    /// Candidates rescored from F32 rows after a quantised scan, when the index has them
    /// (config `topk.rescore_depth`); nil: `max(4·k, 256)`. Never fewer than k.
    public var rescoreDepth: Int?
    /// Whether a request field the model has no feature for is a 400 (config
    /// `request.unknown_features: reject`) rather than ignored.
    public var rejectUnknownFeatures = false

    public init(defaultK: Int = 100, maxK: Int = 1000, maxCandidates: Int = 100_000,
                fusion: FusionPolicy = FusionPolicy(), allowFusionOverride: Bool = false,
                parallelThreshold: Int = 50_000, parallelism: Int = ScoringOptions.cores, rescoreDepth: Int? = nil) {
        self.rescoreDepth = rescoreDepth
        self.defaultK = defaultK
        self.maxK = maxK
        self.maxCandidates = maxCandidates
        self.fusion = fusion
        self.allowFusionOverride = allowFusionOverride
        self.parallelThreshold = parallelThreshold
        self.parallelism = parallelism
    }
}
