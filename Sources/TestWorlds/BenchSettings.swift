import Catalog
import PreRankServer

/// The parameters of a bench world (size, dtypes, seed, where it is written, how it is held) and
/// of a `prerank bench` run over it (scenarios, repetitions, threads); `BenchWorld.prepare` keys
/// the files it writes on the world's part.
public struct BenchSettings: Sendable {
    public var items = 1_000_000
    public var tasks = 3
    public var d = 64
    public var candidates = 10_000
    public var k = 100
    public var dtypes: [IndexDType] = [.f32, .f16, .i8]
    /// Repetitions of whole-index figures (each reads the whole index).
    public var repeats = 15
    /// Repetitions of the gathered-candidate and request figures.
    public var gatherRepeats = 200
    /// Where the synthetic model and indexes are written (reused when present).
    public var directory = "/tmp/prerank-bench"
    /// Threads for the parallel whole-index figure.
    public var threads = ScoringOptions.cores
    /// Run the naive scalar baseline (slow: tens of ns per value).
    public var naive = true
    public var seed: UInt64 = 7
    /// Which of `whole`, `gather`, `request` to run (recall needs whole / gather).
    public var scenarios: Set<String> = ["whole", "gather", "request"]
    /// How the indexes are held: huge pages as the server does, or the plain mapping.
    public var residency: ItemIndex.Residency = .hugePages
    /// Extra gather figures at these prefetch distances (rows ahead).
    public var prefetchSweep: [Int] = []
    public init() {}
}
