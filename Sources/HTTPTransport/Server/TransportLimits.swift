/// Every limit and timeout of the HTTP layer, in the units the transport uses (bytes,
/// nanoseconds), built once: by the server from its config (`TransportLimits(server:)` in
/// PreRankServer), by tests field by field.
///
/// Why one value: the limits used to go config milliseconds → `ServerLimits` seconds → the state
/// machine's nanoseconds, with a few set by hand on the way (the gzip inflation cap, the pipeline
/// buffer). Now the config-driven ones are converted in one place and the fixed ones are named
/// and explained here; `HTTPServer`, `Connection`, `MemoryBudget` and `ConnectionStateMachine`
/// all read this same value.
public struct TransportLimits: Sendable, Equatable {
    // MARK: from the config (`server.*`, SPEC §5)

    /// Open connections at most. At the limit the connection idle longest without a request in
    /// progress is closed to admit a new one; only if none is, the new one gets 503 + Retry-After.
    public var maxConnections = 1024
    public var maxHeaderBytes = 16384
    public var maxBodyBytes = 8 << 20
    /// Buffered request bytes (bodies, inflated gzip) of all connections together (`MemoryBudget`).
    public var maxBufferedBytes = 256 << 20
    /// A request head must be complete this long after accept (first request) or after its
    /// first byte (later requests on a keep-alive connection): an absolute deadline.
    public var headerTimeout: UInt64 = 5 * Self.nanosecondsPerSecond
    /// A body must be complete this long after the end of its head: an absolute deadline.
    public var bodyTimeout: UInt64 = 10 * Self.nanosecondsPerSecond
    /// A keep-alive connection with no request is closed this long after its last answer; an
    /// answer the client does not take is cut this long after it began to be written.
    public var idleTimeout: UInt64 = 60 * Self.nanosecondsPerSecond

    // MARK: derived from the config

    /// A gzip request body may inflate to at most this many bytes (413 beyond):
    /// `inflationFactor` times `maxBodyBytes`.
    public var maxInflatedBodyBytes = (8 << 20) * Self.inflationFactor
    /// Input buffered while a request is with the application (the next pipelined head and a
    /// little of its body): `maxHeaderBytes + pipelineReadAhead`. Beyond it reading stops until
    /// the answer is out.
    public var pipelineBufferBytes = 16384 + Self.pipelineReadAhead

    // MARK: fixed

    /// After an early refusal (400, 408, 413, 431, 503…) the write side is shut and input is
    /// read and dropped for at most this long, or `lingerMaxBytes`, so the client reads the
    /// answer instead of a reset.
    public var lingerTimeout: UInt64 = 2 * Self.nanosecondsPerSecond
    public var lingerMaxBytes = 64 << 20
    /// Responses at least this large are gzipped when the client accepts gzip (smaller ones gain
    /// little over gzip's own header and cost the CPU).
    public var gzipThreshold = 1024

    /// How much larger than `maxBodyBytes` an inflated gzip body may be. Why a ratio of the body
    /// limit rather than a key of its own: it follows the limit the operator chose, and it stops
    /// a "zip bomb" (a small body inflating without end) at a bounded size.
    public static let inflationFactor = 4
    /// Bytes read past the pipelined head while a request is with the application: one read's
    /// worth (64 KiB), so a pipelining client is not stalled on every request.
    public static let pipelineReadAhead = 65536
    /// The share of `maxBufferedBytes` kept for input not yet framed (`inputHeadroom`).
    public static let inputHeadroomDivisor = 16
    public static let nanosecondsPerSecond: UInt64 = 1_000_000_000
    public static let nanosecondsPerMillisecond: UInt64 = 1_000_000

    /// The defaults of the config (`server.*` left out).
    public init() {}

    /// The config-driven limits; the derived ones computed from them, the fixed ones at their
    /// defaults. Timeouts in milliseconds, as the config states them.
    public init(maxConnections: Int, maxHeaderBytes: Int, maxBodyBytes: Int, maxBufferedBytes: Int,
                headerTimeoutMs: Int, bodyTimeoutMs: Int, idleTimeoutMs: Int) {
        self.maxConnections = maxConnections
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.maxBufferedBytes = maxBufferedBytes
        self.headerTimeout = Self.nanoseconds(milliseconds: headerTimeoutMs)
        self.bodyTimeout = Self.nanoseconds(milliseconds: bodyTimeoutMs)
        self.idleTimeout = Self.nanoseconds(milliseconds: idleTimeoutMs)
        self.maxInflatedBodyBytes = max(maxBodyBytes * Self.inflationFactor, maxBodyBytes)
        self.pipelineBufferBytes = maxHeaderBytes + Self.pipelineReadAhead
    }

    /// The top of the buffered-bytes budget that only input not yet framed may use, so that
    /// with bodies holding all they may a health check's head still fits: a sixteenth of it,
    /// but never so much that a body of `maxBodyBytes` could not fit.
    public var inputHeadroom: Int {
        max(0, min(maxBufferedBytes / Self.inputHeadroomDivisor, maxBufferedBytes - maxBodyBytes))
    }

    static func nanoseconds(milliseconds: Int) -> UInt64 {
        UInt64(max(0, milliseconds)) * nanosecondsPerMillisecond
    }
}
