/// Counters of the HTTP layer, exported by `/metrics`.
public struct HTTPServerStats: Sendable, Equatable {
    public var open = 0
    public var accepted = 0
    public var rejected = 0
    public var protocolErrors = 0
    /// All timeouts; the kinds below add up to it.
    public var timeouts = 0
    public var headTimeouts = 0
    public var bodyTimeouts = 0
    public var idleTimeouts = 0
    public var writeTimeouts = 0
    /// Reusable (idle) connections closed to admit a new one at `maxConnections`.
    public var evicted = 0
    /// Requests refused 503 because the buffered-bytes budget was spent.
    public var budgetRefusals = 0
    /// Bytes reserved in the buffered-bytes budget at the time of reading, and its limit.
    public var bufferedBytes = 0
    public var bufferedBytesLimit = 0

    public init() {}
}
