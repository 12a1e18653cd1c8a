import Testing
@testable import HTTPTransport

/// Drives `ConnectionStateMachine` through its states with a mock clock (plain `UInt64` ns)
/// and a fake budget: no sockets, no sleeping. Each test feeds events and checks the actions.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine
    typealias Action = ConnectionStateMachine.Action

    static let second: UInt64 = 1_000_000_000
    let s = ConnectionStateMachineTests.second

    static var limits: TransportLimits {
        var c = TransportLimits()
        c.maxHeaderBytes = 1024
        c.maxBodyBytes = 1000
        c.headerTimeout = 5 * second
        c.bodyTimeout = 10 * second
        c.idleTimeout = 60 * second
        c.lingerTimeout = 2 * second
        c.lingerMaxBytes = 4096
        c.pipelineBufferBytes = 2048
        return c
    }

    func machine(now: UInt64 = 0, budget: FakeBudget = FakeBudget(limit: 1 << 20), limits: TransportLimits = Self.limits) -> (Machine, [Action]) {
        var m = Machine(now: now, limits: limits, budget: budget)
        let a = m.start()
        return (m, a)
    }

    // MARK: action helpers

    func sent(_ actions: [Action]) -> [Machine.Outbound] {
        actions.compactMap { if case .send(let o) = $0 { return o } else { return nil } }
    }
    func statuses(_ actions: [Action]) -> [Int] { sent(actions).map(\.status) }
    func refusals(_ actions: [Action]) -> [Machine.Refusal.Reason] { sent(actions).compactMap { $0.refusal?.reason } }
    func dispatched(_ actions: [Action]) -> [(HTTPParser.Head, [UInt8])] {
        actions.compactMap { if case .dispatch(let h, let b, _) = $0 { return (h, b) } else { return nil } }
    }
    /// Budget handed to the application with each dispatched body.
    func reservations(_ actions: [Action]) -> [Int] {
        actions.compactMap { if case .dispatch(_, _, let r) = $0 { return r } else { return nil } }
    }
    func targets(_ actions: [Action]) -> [String] { dispatched(actions).map(\.0.target) }
    func closes(_ actions: [Action]) -> Bool { actions.contains { if case .close = $0 { return true } else { return false } } }
    func armed(_ actions: [Action]) -> UInt64? {
        actions.compactMap { if case .armDeadline(let t) = $0 { return t } else { return nil } }.last
    }
    func timeouts(_ actions: [Action]) -> [Machine.TimeoutKind] {
        actions.compactMap { if case .timedOut(let k) = $0 { return k } else { return nil } }
    }
    func has(_ actions: [Action], _ probe: (Action) -> Bool) -> Bool { actions.contains(where: probe) }
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func get(_ target: String, _ extra: String = "") -> String { "GET \(target) HTTP/1.1\r\nHost: t\r\n\(extra)\r\n" }
    func post(_ target: String, _ body: String, _ extra: String = "") -> String {
        "POST \(target) HTTP/1.1\r\nHost: t\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n" + body
    }
    let ok = HTTPResponse(status: 200, body: Array("{}".utf8))


    /// The machine states a refusal as a status and a reason; the shell words it as a
    /// `TransportRefusal` (status, code, message, headers) for the application to render.
    /// (The rendered bytes, the SPEC's JSON error body, are checked in PreRankServerTests.)
    @Test func refusalsAreWordedByTheShell() {
        let busy = TransportRefusal(Machine.Refusal(reason: .budgetSpent))
        #expect(busy == TransportRefusal(status: 503, code: "server_busy", message: "request buffers are full; retry shortly",
                                         headers: [("Retry-After", "1")]))
        let late = TransportRefusal(Machine.Refusal(reason: .timedOut(.head)))
        #expect(late == TransportRefusal(status: 408, code: "request_timeout", message: "request head not received in time"))
        let big = TransportRefusal(Machine.Refusal(reason: .malformed(HTTPParser.Failure(status: 431, message: "m"))))
        #expect(big == TransportRefusal(status: 431, code: "header_too_large", message: "m"))
        let body = TransportRefusal(Machine.Refusal(reason: .bodyTooLarge(length: 9, limit: 8)))
        #expect(body == TransportRefusal(status: 413, code: "body_too_large", message: "body of 9 bytes is larger than the limit of 8"))
    }

    // MARK: admission and drain

    /// Only connections with no request in progress are reusable (evictable).
    @Test func onlyIdleConnectionsAreEvicted() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes("GET /"), now: 0)
        #expect(!m.isReusable && m.reusableSince == nil && m.evict(now: 0).isEmpty)
        _ = m.bytesRead(bytes("a HTTP/1.1\r\nHost: t\r\n\r\n"), now: 0)
        #expect(!m.isReusable && m.evict(now: 0).isEmpty)
        _ = m.jobFinished(ok, now: 0)
        _ = m.writeCompleted(now: 7)
        #expect(m.reusableSince == 7 && closes(m.evict(now: 8)))
    }

    @Test func drainClosesIdleAndAnswersBusyWithConnectionClose() {
        var (idle, _) = machine()
        #expect(closes(idle.drain(now: 0)))
        var (busy, _) = machine()
        _ = busy.bytesRead(bytes(get("/a")), now: 0)
        #expect(!closes(busy.drain(now: 0)))
        let f = busy.jobFinished(ok, now: 0)
        #expect(sent(f)[0].keepAlive == false && closes(busy.writeCompleted(now: 0)))
    }

    /// Bytes pipelined behind a `Connection: close` request: linger rather than reset.
    @Test func inputAfterConnectionCloseLingers() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes(get("/a", "Connection: close\r\n") + get("/b")), now: 0)
        _ = m.jobFinished(ok, now: 0)
        let w = m.writeCompleted(now: 0)
        #expect(!closes(w) && m.stateName == "lingering")
    }

    @Test func http10WithoutKeepAliveClosesAfterTheAnswer() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes("GET / HTTP/1.0\r\n\r\n"), now: 0)
        let f = m.jobFinished(ok, now: 0)
        #expect(sent(f)[0].keepAlive == false && sent(f)[0].minorVersion == 0)
        #expect(closes(m.writeCompleted(now: 0)))
    }
}

/// Impossible transitions stop the process with the state in the message.
@Suite struct ConnectionStateMachineExitTests {
    @Test func jobFinishedWithoutARequestIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var m = ConnectionStateMachine(now: 0, limits: TransportLimits(), budget: FakeBudget(limit: 1024))
            _ = m.jobFinished(HTTPResponse(status: 200), now: 0)
        }
    }

    @Test func bytesAfterCloseIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var m = ConnectionStateMachine(now: 0, limits: TransportLimits(), budget: FakeBudget(limit: 1024))
            _ = m.timerFired(now: 10_000_000_000)
            _ = m.bytesRead(Array("x".utf8), now: 0)
        }
    }
}