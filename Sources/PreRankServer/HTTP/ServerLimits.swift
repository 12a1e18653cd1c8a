/// Limits and timeouts of the HTTP layer (config `server.*`, SPEC §5).
public struct ServerLimits: Sendable, Equatable {
    /// Open connections at most; one more is answered 503 with Retry-After and closed.
    public var maxConnections: Int = 1024
    public var maxHeaderBytes: Int = 16384
    public var maxBodyBytes: Int = 8 << 20
    /// A gzip request body may inflate to at most this many bytes (413 beyond).
    public var maxInflatedBodyBytes: Int = 32 << 20
    /// A request head must arrive within this time of its first byte (slow-loris defence).
    public var headerTimeout: Double = 5
    /// A body must arrive within this time of its head.
    public var bodyTimeout: Double = 10
    /// A keep-alive connection with nothing to do, or a reader that takes no bytes, is closed
    /// after this time.
    public var idleTimeout: Double = 60
    /// Responses at least this large are gzipped when the client accepts gzip.
    public var gzipThreshold: Int = 1024

    public init() {}
}

/// The application behind the HTTP layer. `respond` may be called from any thread, once; the
/// connection writes responses in request order.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void)
}

/// Counters of the HTTP layer, exported by `/metrics`.
public struct HTTPServerStats: Sendable, Equatable {
    public var open = 0
    public var accepted = 0
    public var rejected = 0
    public var protocolErrors = 0
    public var timeouts = 0
}
