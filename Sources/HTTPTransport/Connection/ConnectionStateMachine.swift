/// The life of one HTTP/1.1 connection as a value: events in, actions out, no I/O, no clock.
///
/// Why a value: the old `Connection` kept a dozen Bool flags (`inFlight`, `closeAfterFlush`,
/// `peerClosed`, …) whose combinations were the real states, and one timer re-armed from many
/// places — which is how a silent client came to be held for the idle timeout and a dripped
/// body never cut off. Here every state is named, carries its own deadline (set once when the
/// state is entered, never moved by reads: that is what makes deadlines absolute) and the data
/// that means something in it, and every event is a `switch` over the state. `Connection` is
/// the Dispatch shell that feeds events and carries out the returned actions; tests drive this
/// type with plain `UInt64` clocks and a fake budget.
///
/// The machine renders no API: a refusal is a status and a reason (`Refusal`), worded by the
/// shell (`TransportRefusal`) and rendered into a body by the application. The only outside object it touches is the injected `BufferBudget`, which
/// it asks for every byte it buffers: input not yet framed (a partial head, requests pipelined
/// behind the current one) as it arrives, and a body (its Content-Length up front, a chunked
/// body as it grows). A body's reservation goes to the application with the body
/// (`Action.dispatch`), so that a connection failing while the application works does not
/// free bytes the application still holds.
///
/// States: `awaitingRequest` (fresh, or idle between keep-alive requests; reusable), `readingHead`,
/// `awaitingContinue` (a `100 Continue` sent, no body byte yet), `readingBody` (by length or
/// chunked), `dispatched` (the application has the request), `writing` (an answer is going out),
/// `lingering` (after an early refusal: write side shut, input dropped for a bounded time),
/// `closed`. An event that cannot happen in a state is a `preconditionFailure` naming the state.
/// The types are in `ConnectionStateMachine+Types.swift`, framing and budget bookkeeping in
/// `+Framing.swift`; the stored properties are internal only so that those files can change
/// them, and nothing but the machine's events does.
struct ConnectionStateMachine {
    /// Limits and timeouts, in bytes and nanoseconds (`TransportLimits`, built once by the server).
    let limits: TransportLimits
    let budget: any BufferBudget
    var state: State
    /// Bytes read and not yet framed: a head, a pipelined request behind the current one.
    /// Every byte of it is reserved in `budget` (changed only through `bufferInbound`,
    /// `consumeInbound` and `dropInbound`).
    var inbound: [UInt8] = []
    /// The body being read; kept out of `State` so appending does not copy it (an enum payload
    /// would be copied on every mutation).
    var body: [UInt8] = []
    /// Bytes of `budget` held for `body` (at least `body.count`).
    var bodyReserved = 0
    var peerClosed = false
    /// Graceful shutdown: no keep-alive after the current answer.
    var draining = false
    /// Bytes the head scanner has examined over the connection's life. Each received byte is
    /// examined at most once, so this never exceeds the bytes received (tests and the fuzzer
    /// check that the work stays linear).
    var headScanSteps = 0
    /// What the shell was last told about reading and the deadline (actions only on change).
    var reportedReading = true
    var reportedDeadline: UInt64?

    /// A fresh connection accepted at `now`: its first head is due `headerTimeout` after accept.
    init(now: UInt64, limits: TransportLimits, budget: any BufferBudget) {
        self.limits = limits
        self.budget = budget
        self.state = .awaitingRequest(since: now, deadline: now + limits.headerTimeout, kind: .head)
    }

    // MARK: queries

    /// Whether closing this connection loses nothing: no request has begun (nginx's "reusable").
    var isReusable: Bool {
        if case .awaitingRequest = state { return true }
        return false
    }

    /// Since when the connection has been reusable (nil when it is not).
    var reusableSince: UInt64? {
        if case .awaitingRequest(let since, _, _) = state { return since }
        return nil
    }

    /// The deadline of the current state (nil while the application works: its budget rules).
    var deadline: UInt64? {
        switch state {
        case .awaitingRequest(_, let d, _), .readingHead(let d, _), .awaitingContinue(_, _, let d), .readingBody(_, _, let d),
             .writing(_, let d), .lingering(let d, _):
            return d
        case .dispatched, .closed:
            return nil
        }
    }

    var stateName: String {
        switch state {
        case .awaitingRequest: return "awaitingRequest"
        case .readingHead: return "readingHead"
        case .awaitingContinue: return "awaitingContinue"
        case .readingBody: return "readingBody"
        case .dispatched: return "dispatched"
        case .writing: return "writing"
        case .lingering: return "lingering"
        case .closed: return "closed"
        }
    }

    var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// Bytes buffered by this connection (inbound and body), for tests and accounting.
    var bufferedBytes: Int { inbound.count + body.count }

    /// Bytes of the budget this connection holds (not counting bodies handed to the application).
    var reserved: Int { inbound.count + bodyReserved }

    // MARK: events

    /// The first actions: arm the head deadline.
    mutating func start() -> [Action] {
        finish([])
    }

    mutating func bytesRead(_ bytes: UnsafeRawBufferPointer, now: UInt64) -> [Action] {
        var actions: [Action] = []
        switch state {
        case .closed:
            preconditionFailure("bytesRead in \(stateName)")
        case .lingering(let deadline, let discarded):
            if discarded + bytes.count > limits.lingerMaxBytes {
                close(&actions)
            } else {
                state = .lingering(deadline: deadline, discarded: discarded + bytes.count)
            }
            return finish(actions)
        case .writing(.linger, _):
            return finish(actions)  // a refused request's input is dropped
        case .awaitingContinue(let head, let framing, let deadline):
            state = .readingBody(head, framing, deadline: deadline)
            return bytesRead(bytes, now: now)
        case .readingBody(let head, .length(let remaining), let deadline) where inbound.isEmpty:
            // The common case: body bytes go straight from the read into the body buffer, which
            // holds a reservation for the whole Content-Length.
            let take = min(remaining, bytes.count)
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<take]))
            if take == remaining {
                dispatch(head, &actions)
            } else {
                state = .readingBody(head, .length(remaining: remaining - take), deadline: deadline)
            }
            if take < bytes.count && !bufferInbound(UnsafeRawBufferPointer(rebasing: bytes[take...])) {
                overBudget(now: now, &actions)
                return finish(actions)
            }
        case .awaitingRequest, .readingHead, .readingBody, .dispatched, .writing(.nextRequest, _), .writing(.close, _):
            guard bufferInbound(bytes) else {
                overBudget(now: now, &actions)
                return finish(actions)
            }
        }
        process(now: now, &actions)
        return finish(actions)
    }

    /// Convenience for tests.
    mutating func bytesRead(_ bytes: [UInt8], now: UInt64) -> [Action] {
        bytes.withUnsafeBytes { bytesRead($0, now: now) }
    }

    /// The client shut its write side (EOF). Requests it pipelined before are still answered.
    mutating func peerHalfClosed(now: UInt64) -> [Action] {
        var actions: [Action] = []
        peerClosed = true
        switch state {
        case .awaitingRequest, .readingHead, .awaitingContinue, .readingBody:
            closeIfNothingMoreCanArrive(&actions)
        case .dispatched, .writing:
            break  // answer it; `writeCompleted` closes once nothing complete is left
        case .lingering:
            close(&actions)
        case .closed:
            preconditionFailure("peerHalfClosed in \(stateName)")
        }
        return finish(actions)
    }

    /// The shell's output buffer drained.
    mutating func writeCompleted(now: UInt64) -> [Action] {
        var actions: [Action] = []
        guard case .writing(let after, _) = state else {
            return finish(actions)  // a `100 Continue` went out: nothing changes
        }
        // Input the client sent after a `Connection: close` request would make the close a reset
        // that can destroy the answer in the client's receive buffer: linger then as well.
        let effective: AfterWrite = after == .close && !inbound.isEmpty ? .linger : after
        switch effective {
        case .close:
            close(&actions)
        case .linger:
            if peerClosed {
                close(&actions)
            } else {
                dropInbound()
                state = .lingering(deadline: now + limits.lingerTimeout, discarded: 0)
                actions.append(.shutdownWriteAndLinger)
            }
        case .nextRequest:
            state = .awaitingRequest(since: now, deadline: now + limits.idleTimeout, kind: .idle)
            if draining && inbound.isEmpty {
                close(&actions)
            } else {
                process(now: now, &actions)
                closeIfNothingMoreCanArrive(&actions)
            }
        }
        return finish(actions)
    }

    /// The application answered the dispatched request. (The body's reservation went with the
    /// dispatch; the shell releases it.)
    mutating func jobFinished(_ response: HTTPResponse, now: UInt64) -> [Action] {
        guard case .dispatched(let head, let pipelineRefused) = state else { preconditionFailure("jobFinished in \(stateName)") }
        var actions: [Action] = []
        let keep = Self.wantsKeepAlive(head) && !draining && !pipelineRefused
        actions.append(.send(Outbound(content: .answer(response), keepAlive: keep, minorVersion: head.minorVersion,
                                      isHead: head.method == "HEAD")))
        let after: AfterWrite = pipelineRefused ? .linger : keep ? .nextRequest : .close
        state = .writing(after: after, deadline: now + limits.idleTimeout)
        return finish(actions)
    }

    /// The deadline timer fired (possibly late, possibly for a deadline since replaced).
    mutating func timerFired(now: UInt64) -> [Action] {
        var actions: [Action] = []
        guard let d = deadline, now >= d else { return finish(actions) }
        switch state {
        case .awaitingRequest(_, _, let kind):
            // No request had begun: close without an answer.
            actions.append(.timedOut(kind))
            close(&actions)
        case .readingHead:
            actions.append(.timedOut(.head))
            refuse(.timedOut(.head), now: now, &actions)
        case .awaitingContinue, .readingBody:
            actions.append(.timedOut(.body))
            refuse(.timedOut(.body), now: now, &actions)
        case .writing(.nextRequest, _), .writing(.close, _):
            actions.append(.timedOut(.write))
            close(&actions)
        case .writing(.linger, _), .lingering:
            close(&actions)
        case .dispatched, .closed:
            preconditionFailure("timerFired with a deadline in \(stateName)")
        }
        return finish(actions)
    }

    /// Budget may have been released: try again to grow a stalled chunked body.
    mutating func budgetRetry(now: UInt64) -> [Action] {
        var actions: [Action] = []
        guard case .readingBody(let head, .chunked(let decoder, waitingForBudget: true), let deadline) = state else {
            return finish(actions)  // no longer waiting (cut by a deadline, closed, …)
        }
        state = .readingBody(head, .chunked(decoder, waitingForBudget: false), deadline: deadline)
        process(now: now, &actions)
        closeIfNothingMoreCanArrive(&actions)
        return finish(actions)
    }

    /// Graceful shutdown: close now if nothing is in progress, else after the current answer
    /// (which carries `Connection: close`).
    mutating func drain(now: UInt64) -> [Action] {
        var actions: [Action] = []
        draining = true
        if isReusable { close(&actions) }
        return finish(actions)
    }

    /// The server needs this connection's slot: close it if it is reusable, else keep it.
    mutating func evict(now: UInt64) -> [Action] {
        var actions: [Action] = []
        if isReusable { close(&actions) }
        return finish(actions)
    }

    /// The transport failed (reset, write error): drop everything the connection holds. A body
    /// with the application keeps its reservation until the application is done.
    mutating func transportFailed() -> [Action] {
        var actions: [Action] = []
        if !isClosed { close(&actions) }
        return actions
    }
}
