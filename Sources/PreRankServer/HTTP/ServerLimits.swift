/// Limits and timeouts of the HTTP layer (config `server.*`, SPEC §5).
public struct ServerLimits: Sendable, Equatable {
    /// Open connections at most. At the limit the connection idle longest without a request in
    /// progress is closed to admit a new one; only if none is, the new one gets 503 + Retry-After.
    public var maxConnections: Int = 1024
    public var maxHeaderBytes: Int = 16384
    public var maxBodyBytes: Int = 8 << 20
    /// A gzip request body may inflate to at most this many bytes (413 beyond).
    public var maxInflatedBodyBytes: Int = 32 << 20
    /// Buffered request bytes (bodies, inflated gzip) of all connections together (`MemoryBudget`).
    public var maxBufferedBytes: Int = 256 << 20
    /// A request head must be complete this long after accept (first request) or after its
    /// first byte (later requests on a keep-alive connection): an absolute deadline.
    public var headerTimeout: Double = 5
    /// A body must be complete this long after the end of its head: an absolute deadline.
    public var bodyTimeout: Double = 10
    /// A keep-alive connection with no request is closed this long after its last answer; an
    /// answer the client does not take is cut this long after it began to be written.
    public var idleTimeout: Double = 60
    /// After an early refusal (400, 408, 413, 431, 503…) the write side is shut and input is
    /// read and dropped for at most this long, or `lingerMaxBytes`, so the client reads the
    /// answer instead of a reset.
    public var lingerTimeout: Double = 2
    public var lingerMaxBytes: Int = 64 << 20
    /// Responses at least this large are gzipped when the client accepts gzip.
    public var gzipThreshold: Int = 1024

    public init() {}
}

/// The application behind the HTTP layer. `respond` may be called from any thread, once; the
/// connection writes responses in request order.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void)
    /// The transport answered `status` itself (a framing refusal, a timeout, a full budget):
    /// the application counts it with its own answers.
    func transportRefused(status: Int)
}

extension HTTPHandler {
    public func transportRefused(status: Int) {}
}

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
}
