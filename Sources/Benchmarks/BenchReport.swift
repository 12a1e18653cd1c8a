import Catalog

/// What `prerank bench` reports: the run's sizes, cores and kernel, and every figure.
public struct BenchReport: Codable, Sendable {
    public var items: Int
    public var tasks: Int
    public var d: Int
    public var candidates: Int
    public var k: Int
    public var cores: Int
    /// The scoring kernel that ran: "avx2" or "scalar" (`ItemIndex.kernelISA`).
    public var kernel: String = ItemIndex.kernelISA
    public var figures: [BenchFigure]
}
