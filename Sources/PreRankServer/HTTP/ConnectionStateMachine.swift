import Foundation

/// The life of one HTTP/1.1 connection as a value: events in, actions out, no I/O, no clock.
///
/// Why a value: the old `Connection` kept a dozen Bool flags (`inFlight`, `closeAfterFlush`,
/// `peerClosed`, …) whose combinations were the real states, and one timer re-armed from many
/// places — which is how a silent client came to be held for the idle timeout and a dripped
/// body never cut off. Here every state is named, carries its own deadline (set once when the
/// state is entered, never moved by reads: that is what makes deadlines absolute), and every
/// event is a `switch` over the state. `Connection` is the Dispatch shell that feeds events and
/// carries out the returned actions; tests drive this type with plain `UInt64` clocks.
///
/// States: `awaitingRequest` (fresh, or idle between keep-alive requests; reusable), `readingHead`,
/// `awaitingContinue` (a `100 Continue` sent, no body byte yet), `readingBody` (by length or
/// chunked), `dispatched` (the application has the request), `writing` (an answer is going out),
/// `lingering` (after an early refusal: write side shut, input dropped for a bounded time),
/// `closed`. An event that cannot happen in a state is a `preconditionFailure` naming the state.
struct ConnectionStateMachine {
    /// Limits, in the units the machine uses (nanoseconds, bytes).
    struct Configuration: Sendable, Equatable {
        var maxHeaderBytes = 16384
        var maxBodyBytes = 8 << 20
        var headerTimeout: UInt64 = 5_000_000_000
        var bodyTimeout: UInt64 = 10_000_000_000
        var idleTimeout: UInt64 = 60_000_000_000
        var lingerTimeout: UInt64 = 2_000_000_000
        var lingerMaxBytes = 64 << 20
        /// Input buffered while a request is with the application (the next pipelined head);
        /// beyond it reading stops until the answer is out.
        var pipelineBufferBytes = 16384 + 65536

        init() {}

        init(limits: ServerLimits) {
            func ns(_ seconds: Double) -> UInt64 { UInt64((seconds * 1e9).rounded()) }
            maxHeaderBytes = limits.maxHeaderBytes
            maxBodyBytes = limits.maxBodyBytes
            headerTimeout = ns(limits.headerTimeout)
            bodyTimeout = ns(limits.bodyTimeout)
            idleTimeout = ns(limits.idleTimeout)
            lingerTimeout = ns(limits.lingerTimeout)
            lingerMaxBytes = limits.lingerMaxBytes
            pipelineBufferBytes = limits.maxHeaderBytes + 65536
        }
    }

    enum TimeoutKind: String, Sendable, Equatable, CaseIterable {
        /// The head was not complete by its deadline (or a fresh connection sent nothing).
        case head
        /// The body was not complete by its deadline.
        case body
        /// A keep-alive connection had no request for `idleTimeout`.
        case idle
        /// An answer was not taken by the client within `idleTimeout`.
        case write
    }

    /// What happens once the answer being written is out.
    enum AfterWrite: Sendable, Equatable {
        case nextRequest
        case close
        /// Shut the write side and drop input for a while, so the client reads the answer.
        case linger
    }

    /// An answer for the shell to serialise (Date, Content-Length, Connection) and write.
    struct Outbound: Sendable {
        var response: HTTPResponse
        var keepAlive: Bool
        var minorVersion: Int
        var isHead: Bool
        /// Answered by the transport itself (framing, limits, timeouts, budget), not the application.
        var isRefusal: Bool
    }

    enum Action: Sendable {
        case readMore
        /// Back-pressure: stop reading until `readMore`.
        case stopReading
        case armDeadline(UInt64)
        case disarmDeadline
        /// Hand the request to the application; answer with `jobFinished`.
        case dispatch(HTTPParser.Head, body: [UInt8])
        /// Write `HTTP/1.1 100 Continue`.
        case sendContinue
        /// Write this answer, then report `writeCompleted`.
        case send(Outbound)
        /// Shut the write side (the answer is out) and keep reading, dropping the bytes.
        case shutdownWriteAndLinger
        case close
        /// Count a timeout of this kind (the close or 408 comes as its own action).
        case timedOut(TimeoutKind)
        /// A chunked body cannot grow within the memory budget: call `budgetRetry` a little later.
        case waitForBudget
    }

    enum BodyFraming: Sendable {
        case length(remaining: Int)
        case chunked(ChunkedDecoder)
    }

    enum State {
        case awaitingRequest(since: UInt64, deadline: UInt64, kind: TimeoutKind)
        /// `scanner` remembers how far `inbound` was scanned, so each byte is looked at once.
        case readingHead(deadline: UInt64, scanner: HeadScanner)
        case awaitingContinue(HTTPParser.Head, BodyFraming, deadline: UInt64)
        case readingBody(HTTPParser.Head, BodyFraming, deadline: UInt64)
        case dispatched(HTTPParser.Head)
        case writing(after: AfterWrite, deadline: UInt64)
        case lingering(deadline: UInt64, discarded: Int)
        case closed
    }

    let config: Configuration
    let budget: MemoryBudget
    private(set) var state: State
    /// Bytes read and not yet framed: a head, a pipelined request behind the current one.
    private var inbound: [UInt8] = []
    /// The body being read; kept out of `State` so appending does not copy it (an enum payload
    /// would be copied on every mutation).
    private var body: [UInt8] = []
    /// Bytes of `budget` this connection holds for the current request.
    private(set) var reserved = 0
    private(set) var peerClosed = false
    /// Bytes the head scanner has examined over the connection's life. Each received byte is
    /// examined at most once, so this never exceeds the bytes received (tests and the fuzzer
    /// check that the work stays linear).
    private(set) var headScanSteps = 0
    private var draining = false
    private var budgetStalled = false
    private var reportedReading = true
    private var reportedDeadline: UInt64?

    /// A fresh connection accepted at `now`: its first head is due `headerTimeout` after accept.
    init(now: UInt64, config: Configuration, budget: MemoryBudget) {
        self.config = config
        self.budget = budget
        self.state = .awaitingRequest(since: now, deadline: now + config.headerTimeout, kind: .head)
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
            if discarded + bytes.count > config.lingerMaxBytes {
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
            // The common case: body bytes go straight from the read into the body buffer.
            let take = min(remaining, bytes.count)
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<take]))
            if take < bytes.count { inbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[take...])) }
            if take == remaining {
                dispatch(head, &actions)
            } else {
                state = .readingBody(head, .length(remaining: remaining - take), deadline: deadline)
            }
        default:
            inbound.append(contentsOf: bytes)
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
            // Every complete request was framed as its bytes arrived; a partial one never completes.
            close(&actions)
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
                inbound = []
                state = .lingering(deadline: now + config.lingerTimeout, discarded: 0)
                actions.append(.shutdownWriteAndLinger)
            }
        case .nextRequest:
            state = .awaitingRequest(since: now, deadline: now + config.idleTimeout, kind: .idle)
            if draining && inbound.isEmpty {
                close(&actions)
            } else {
                process(now: now, &actions)
                if peerClosed {
                    switch state {
                    case .awaitingRequest, .readingHead, .awaitingContinue, .readingBody: close(&actions)
                    default: break
                    }
                }
            }
        }
        return finish(actions)
    }

    /// The application answered the dispatched request.
    mutating func jobFinished(_ response: HTTPResponse, now: UInt64) -> [Action] {
        guard case .dispatched(let head) = state else { preconditionFailure("jobFinished in \(stateName)") }
        var actions: [Action] = []
        releaseBudget()
        let keep = Self.wantsKeepAlive(head) && !draining
        actions.append(.send(Outbound(response: response, keepAlive: keep, minorVersion: head.minorVersion,
                                      isHead: head.method == "HEAD", isRefusal: false)))
        state = .writing(after: keep ? .nextRequest : .close, deadline: now + config.idleTimeout)
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
            refuse(408, "request_timeout", "request head not received in time", now: now, &actions)
        case .awaitingContinue, .readingBody:
            actions.append(.timedOut(.body))
            refuse(408, "request_timeout", "request body not received in time", now: now, &actions)
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
        guard budgetStalled, !isClosed else { return finish(actions) }
        budgetStalled = false
        process(now: now, &actions)
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

    /// The transport failed (reset, write error): drop everything.
    mutating func transportFailed() -> [Action] {
        var actions: [Action] = []
        if !isClosed { close(&actions) }
        return actions
    }

    // MARK: framing

    /// Frames what is buffered, as far as the state allows.
    private mutating func process(now: UInt64, _ actions: inout [Action]) {
        while true {
            switch state {
            case .awaitingRequest(_, let deadline, let kind):
                guard !inbound.isEmpty else { return }
                // A request begins. The first head is due from accept; a keep-alive one from its first byte.
                state = .readingHead(deadline: kind == .head ? deadline : now + config.headerTimeout,
                                     scanner: HeadScanner(maxHeaderBytes: config.maxHeaderBytes))
            case .readingHead(let deadline, var scanner):
                let before = scanner.scanned
                let scan = inbound.withUnsafeBytes { scanner.scan($0) }
                headScanSteps += scanner.scanned - before
                switch scan {
                case .incomplete:
                    state = .readingHead(deadline: deadline, scanner: scanner)
                    return
                case .failure(let f):
                    refuse(f, now: now, &actions)
                    return
                case .complete(let end):
                    let parsed = inbound.withUnsafeBufferPointer {
                        HTTPParser(limits: .init(maxHeaderBytes: config.maxHeaderBytes, maxBodyBytes: config.maxBodyBytes))
                            .parseHead(UnsafeBufferPointer(rebasing: $0[0..<end]))
                    }
                    switch parsed {
                    case .failure(let f):
                        refuse(f, now: now, &actions)
                        return
                    case .success(var head):
                        head.length = end
                        inbound.removeFirst(end)
                        beginBody(head, now: now, &actions)
                    }
                }
            case .awaitingContinue(let head, let framing, let deadline):
                guard !inbound.isEmpty else { return }
                state = .readingBody(head, framing, deadline: deadline)
            case .readingBody(let head, .length(let remaining), let deadline):
                guard !inbound.isEmpty else { return }
                let take = min(remaining, inbound.count)
                body.append(contentsOf: inbound[0..<take])
                inbound.removeFirst(take)
                if take == remaining {
                    dispatch(head, &actions)
                } else {
                    state = .readingBody(head, .length(remaining: remaining - take), deadline: deadline)
                }
                return
            case .readingBody(let head, .chunked(var decoder), let deadline):
                guard !inbound.isEmpty, !budgetStalled else { return }
                // Reserve room for the data this input may hold before appending it.
                let needed = min(body.count + decoder.dataBytes(in: inbound.count), config.maxBodyBytes)
                if needed > reserved {
                    let grown = min(max(needed, reserved * 2, 65536), config.maxBodyBytes)
                    if budget.reserve(grown - reserved) {
                        reserved = grown
                    } else if budget.reserve(needed - reserved) {
                        reserved = needed
                    } else {
                        budgetStalled = true
                        actions.append(.waitForBudget)
                        return
                    }
                    body.reserveCapacity(reserved)
                }
                let step = inbound.withUnsafeBytes { decoder.feed($0, into: &body) }
                switch step {
                case .needMore:
                    inbound.removeAll(keepingCapacity: true)
                    state = .readingBody(head, .chunked(decoder), deadline: deadline)
                    return
                case .done(let used):
                    inbound.removeFirst(used)
                    dispatch(head, &actions)
                    return
                case .failure(let f):
                    refuse(f, now: now, &actions)
                    return
                }
            case .dispatched, .writing, .lingering, .closed:
                return
            }
        }
    }

    /// The head is read: choose the body framing, reserve its bytes, answer 100-continue.
    private mutating func beginBody(_ head: HTTPParser.Head, now: UInt64, _ actions: inout [Action]) {
        let deadline = now + config.bodyTimeout
        let framing: BodyFraming
        if head.chunked {
            framing = .chunked(ChunkedDecoder(maxBody: config.maxBodyBytes))
        } else {
            // No Content-Length and no Transfer-Encoding: an empty body (RFC 9112 §6.3).
            let length = head.contentLength ?? 0
            if length == 0 {
                dispatch(head, &actions)
                return
            }
            guard length <= config.maxBodyBytes else {
                refuse(413, "body_too_large", "body of \(length) bytes is larger than the limit of \(config.maxBodyBytes)", now: now, &actions)
                return
            }
            guard budget.reserve(length) else {
                refuse(503, "server_busy", "request buffers are full; retry shortly", retryAfter: true, now: now, &actions)
                return
            }
            reserved = length
            body.reserveCapacity(length)
            framing = .length(remaining: length)
        }
        // 100-continue only when no body byte came with the head (the parser drops the
        // expectation for HTTP/1.0, which would not understand an interim answer).
        if head.expectContinue && inbound.isEmpty {
            actions.append(.sendContinue)
            state = .awaitingContinue(head, framing, deadline: deadline)
        } else {
            state = .readingBody(head, framing, deadline: deadline)
        }
    }

    private mutating func dispatch(_ head: HTTPParser.Head, _ actions: inout [Action]) {
        var out: [UInt8] = []
        swap(&out, &body)
        actions.append(.dispatch(head, body: out))
        state = .dispatched(head)
    }

    private mutating func refuse(_ f: HTTPParser.Failure, now: UInt64, _ actions: inout [Action]) {
        let code: String
        switch f.status {
        case 413: code = "body_too_large"
        case 431: code = "header_too_large"
        case 501: code = "not_implemented"
        case 505: code = "http_version_not_supported"
        case 417: code = "expectation_failed"
        default: code = "bad_request"
        }
        refuse(f.status, code, f.message, now: now, &actions)
    }

    /// Answers a refusal with `Connection: close`, then lingers: the client may still be sending
    /// a body we will not read, and closing with unread input would reset the connection before
    /// the client reads the answer.
    private mutating func refuse(_ status: Int, _ code: String, _ message: String, retryAfter: Bool = false,
                                 now: UInt64, _ actions: inout [Action]) {
        releaseBudget()
        body = []
        inbound = []
        budgetStalled = false
        let error = APIError(status: status, code: code, message: message, headers: retryAfter ? [("Retry-After", "1")] : [])
        actions.append(.send(Outbound(response: .error(error), keepAlive: false, minorVersion: 1, isHead: false, isRefusal: true)))
        state = .writing(after: .linger, deadline: now + config.lingerTimeout)
    }

    private mutating func close(_ actions: inout [Action]) {
        releaseBudget()
        body = []
        inbound = []
        state = .closed
        actions.append(.close)
    }

    private mutating func releaseBudget() {
        if reserved > 0 {
            budget.release(reserved)
            reserved = 0
        }
    }

    /// Appends the read and deadline actions the new state implies, when they changed.
    private mutating func finish(_ actions: [Action]) -> [Action] {
        var actions = actions
        guard !isClosed else { return actions }
        let read = wantsToRead
        if read != reportedReading {
            reportedReading = read
            actions.append(read ? .readMore : .stopReading)
        }
        let d = deadline
        if d != reportedDeadline {
            reportedDeadline = d
            actions.append(d.map { .armDeadline($0) } ?? .disarmDeadline)
        }
        return actions
    }

    private var wantsToRead: Bool {
        if peerClosed { return false }
        switch state {
        case .closed: return false
        case .lingering, .writing(.linger, _): return true
        case .awaitingRequest, .readingHead, .awaitingContinue: return true
        case .readingBody: return !budgetStalled
        case .dispatched, .writing: return inbound.count < config.pipelineBufferBytes
        }
    }

    static func wantsKeepAlive(_ head: HTTPParser.Head) -> Bool {
        var close = false, keepAlive = false
        for (name, value) in head.headers where name.caseInsensitiveEquals("connection") {
            for token in value.split(separator: ",") {
                let t = token.trimmingCharacters(in: [" ", "\t"]).lowercased()
                if t == "close" { close = true } else if t == "keep-alive" { keepAlive = true }
            }
        }
        if close { return false }
        return head.minorVersion >= 1 || keepAlive
    }
}
