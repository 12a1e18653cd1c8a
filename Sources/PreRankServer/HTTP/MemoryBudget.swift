import Synchronization

/// The server-wide budget for buffered request bytes (config `server.max_buffered_bytes`).
///
/// Why: per-connection limits alone let 200 clients that stall half-way through 8 MB bodies
/// hold 1.6 GB. Every request body reserves its bytes here before they are buffered (its
/// Content-Length up front; a chunked body as it grows), and so does an inflated gzip body; the
/// reservation is released when the request is answered or the connection closes. A request
/// that cannot reserve is answered 503 + Retry-After at once, a chunked body that cannot grow
/// stops being read (back-pressure) until bytes are released or its deadline cuts it.
public final class MemoryBudget: Sendable {
    public let limit: Int
    private let used = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    /// Takes `bytes` from the budget if that many are left.
    public func reserve(_ bytes: Int) -> Bool {
        precondition(bytes >= 0, "negative reservation \(bytes)")
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    public func release(_ bytes: Int) {
        let after = used.subtract(bytes, ordering: .relaxed).newValue
        precondition(after >= 0, "budget released more than reserved (\(after))")
    }

    /// Bytes reserved now.
    public var inUse: Int { used.load(ordering: .relaxed) }
}
