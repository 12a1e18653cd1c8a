/// A cumulative histogram with fixed upper bounds (Prometheus `le` buckets). Not `Histogram`:
/// that is the hdrhistogram-swift module the load generator imports, and the two names would
/// shadow each other in any file that sees both.
public struct BucketHistogram: Sendable {
    public let bounds: [Double]
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double]) {
        self.bounds = bounds
        self.counts = [UInt64](repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ value: Double) {
        // Non-cumulative per bucket; made cumulative when rendered.
        if let i = bounds.firstIndex(where: { value <= $0 }) { counts[i] += 1 }
        sum += value
        count += 1
    }

    /// Latency buckets in seconds: 0.25 ms … 2.5 s, dense around the 150 ms budget.
    public static let latencySeconds: [Double] = [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                                  0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 1, 2.5]
    public static let candidateCounts: [Double] = [0, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 1e6]
}
