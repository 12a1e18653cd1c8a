/// One measured figure.
public struct BenchFigure: Codable, Sendable {
    public var scenario: String
    public var dtype: String
    public var name: String
    /// Median and best of the repetitions, milliseconds (0 for pure values such as recall).
    public var p50Ms: Double
    public var minMs: Double
    /// The figure this one is compared with (same scenario and dtype, same run).
    public var baseline: String?
    /// `p50Ms / baseline.p50Ms` (< 1: faster than the baseline).
    public var ratio: Double?
    /// Bytes read per second at the median, GB/s.
    public var gbPerS: Double?
    /// A value that is not a time (recall).
    public var value: Double?
    public var note: String?
}
