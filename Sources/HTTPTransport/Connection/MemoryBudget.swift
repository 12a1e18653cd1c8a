import Synchronization

/// The server-wide budget for buffered request bytes (config `server.max_buffered_bytes`).
///
/// Why: per-connection limits alone let 200 clients that stall half-way through 8 MB bodies
/// hold 1.6 GB. Every byte a connection buffers reserves here first: input not yet framed (a
/// partial head, requests pipelined behind the current one) as it is read, a body up front by
/// its Content-Length or, chunked, as it grows, and an inflated gzip body. Input is released as
/// it is framed or dropped; a body when the application is done with it (not before, even if
/// the connection fails meanwhile) or when the connection closes before dispatching it. Input
/// that cannot reserve is refused 503 + Retry-After (or, pipelined behind a request in
/// progress, dropped and the connection ended after that answer); a chunked body that cannot
/// grow stops being read (back-pressure) until bytes are released or its deadline cuts it.
final class MemoryBudget: BufferBudget, Sendable {
    let limit: Int
    /// The top of the budget, which only input not yet framed may use: with bodies holding all
    /// they may, a health check or a small request still has room for its head.
    let inputHeadroom: Int
    private let used = Atomic<Int>(0)

    init(limit: Int, inputHeadroom: Int = 0) {
        precondition((0...limit).contains(inputHeadroom), "headroom \(inputHeadroom) outside the budget of \(limit)")
        self.limit = limit
        self.inputHeadroom = inputHeadroom
    }

    /// The server's budget: `maxBufferedBytes`, with `TransportLimits.inputHeadroom` of it kept
    /// for input not yet framed.
    convenience init(limits: TransportLimits) {
        self.init(limit: limits.maxBufferedBytes, inputHeadroom: limits.inputHeadroom)
    }

    /// Takes `bytes` for a body (or an inflated body) if that many are left below the headroom.
    func reserve(_ bytes: Int) -> Bool { take(bytes, upTo: limit - inputHeadroom) }

    /// Takes `bytes` for input not yet framed if that many are left, headroom included.
    func reserveInput(_ bytes: Int) -> Bool { take(bytes, upTo: limit) }

    private func take(_ bytes: Int, upTo ceiling: Int) -> Bool {
        precondition(bytes >= 0, "negative reservation \(bytes)")
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + bytes <= ceiling else { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func release(_ bytes: Int) {
        let after = used.subtract(bytes, ordering: .relaxed).newValue
        precondition(after >= 0, "budget released more than reserved (\(after))")
    }

    /// Bytes reserved now.
    var inUse: Int { used.load(ordering: .relaxed) }
}
