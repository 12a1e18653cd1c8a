import Testing
@testable import PreRankServer

/// The buffered-bytes budget as the state machine sees it, faked: a limit the test can move
/// (for bodies and input alike), the bytes in use, and a log of every call (+n reserved,
/// -n released).
final class FakeBudget: BufferBudget {
    var limit: Int
    private(set) var inUse = 0
    private(set) var log: [Int] = []

    init(limit: Int) { self.limit = limit }

    func reserve(_ bytes: Int) -> Bool {
        #expect(bytes >= 0, "negative reservation \(bytes)")
        guard inUse + bytes <= limit else { return false }
        inUse += bytes
        log.append(bytes)
        return true
    }

    func reserveInput(_ bytes: Int) -> Bool { reserve(bytes) }

    func release(_ bytes: Int) {
        inUse -= bytes
        log.append(-bytes)
        #expect(inUse >= 0, "released more than reserved")
    }
}

/// Drives `ConnectionStateMachine` through its states with a mock clock (plain `UInt64` ns)
/// and a fake budget: no sockets, no sleeping. Each test feeds events and checks the actions.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine
    typealias Action = ConnectionStateMachine.Action

    static let second: UInt64 = 1_000_000_000
    let s = ConnectionStateMachineTests.second

    static var config: Machine.Configuration {
        var c = Machine.Configuration()
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

    func machine(now: UInt64 = 0, budget: FakeBudget = FakeBudget(limit: 1 << 20), config: Machine.Configuration = Self.config) -> (Machine, [Action]) {
        var m = Machine(now: now, config: config, budget: budget)
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

    // MARK: deadlines

    /// A client that connects and sends nothing is closed at the head deadline (from accept),
    /// not held for the idle timeout; no answer, since no request had begun.
    @Test func silentClientIsClosedAtTheHeadDeadline() {
        var (m, start) = machine(now: 100)
        #expect(armed(start) == 100 + 5 * s && m.isReusable && m.stateName == "awaitingRequest")
        #expect(!closes(m.timerFired(now: 100 + 5 * s - 1)))
        let a = m.timerFired(now: 100 + 5 * s)
        #expect(closes(a) && sent(a).isEmpty && timeouts(a) == [.head] && m.isClosed)
    }

    /// A head dripped a byte a second: the deadline set at accept never moves; 408 at it.
    @Test func drippedHeadGets408AtTheAbsoluteDeadline() {
        var (m, _) = machine()
        let head = bytes("POST /prerank HTTP/1.1\r\nHost: t\r\n")
        for (i, b) in head.prefix(4).enumerated() {
            let a = m.bytesRead([b], now: UInt64(i + 1) * s)
            #expect(armed(a) == nil, "a read moved the deadline")
        }
        #expect(m.stateName == "readingHead" && !m.isReusable && m.deadline == 5 * s)
        let a = m.timerFired(now: 5 * s)
        #expect(statuses(a) == [408] && timeouts(a) == [.head] && sent(a).first?.keepAlive == false && refusals(a) == [.timedOut(.head)])
        // Lingering close: after the 408 the write side is shut and input dropped, bounded in time.
        let w = m.writeCompleted(now: 5 * s)
        #expect(has(w) { if case .shutdownWriteAndLinger = $0 { return true } else { return false } } && m.stateName == "lingering")
        #expect(m.deadline == 7 * s)
        #expect(!closes(m.bytesRead(bytes("more"), now: 6 * s)))
        #expect(closes(m.timerFired(now: 7 * s)))
    }

    /// A body dripped a byte a second is cut at head end + body timeout, with 408; the bytes it
    /// reserved in the budget are released.
    @Test func drippedBodyGets408AtTheBodyDeadline() {
        let budget = FakeBudget(limit: 10_000)
        var (m, _) = machine(budget: budget)
        let a0 = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"), now: 1 * s)
        #expect(armed(a0) == 11 * s && m.stateName == "readingBody" && budget.inUse == 100)
        for t in 2...10 { #expect(armed(m.bytesRead(bytes("x"), now: UInt64(t) * s)) == nil) }
        #expect(!closes(m.timerFired(now: 11 * s - 1)) && m.stateName == "readingBody")
        let a = m.timerFired(now: 11 * s)
        #expect(statuses(a) == [408] && timeouts(a) == [.body] && budget.inUse == 0)
    }

    /// Idle timeout applies only between requests; the next head's deadline starts at its first byte.
    @Test func keepAliveIdleThenNextHeadDeadline() {
        var (m, _) = machine()
        let a = m.bytesRead(bytes(get("/a")), now: 1 * s)
        #expect(targets(a) == ["/a"] && m.stateName == "dispatched" && m.deadline == nil)
        #expect(has(a) { if case .disarmDeadline = $0 { return true } else { return false } })
        let f = m.jobFinished(ok, now: 2 * s)
        #expect(statuses(f) == [200] && sent(f)[0].keepAlive && armed(f) == 62 * s)
        _ = m.writeCompleted(now: 2 * s)
        #expect(m.deadline == 62 * s && m.isReusable && m.reusableSince == 2 * s)
        _ = m.bytesRead(bytes("GE"), now: 30 * s)
        #expect(m.stateName == "readingHead" && m.deadline == 35 * s)
        // An idle connection that never sends again is closed at the idle deadline, silently.
        var (n, _) = machine()
        _ = n.bytesRead(bytes(get("/a")), now: 0)
        _ = n.jobFinished(ok, now: 0)
        _ = n.writeCompleted(now: 0)
        let t = n.timerFired(now: 60 * s)
        #expect(closes(t) && sent(t).isEmpty && timeouts(t) == [.idle])
    }

    /// A pipelined request already buffered gets its head deadline from the end of the
    /// previous answer, not from when its bytes arrived.
    @Test func pipelinedHeadDeadlineStartsAtThePreviousAnswer() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes(get("/a") + "GE"), now: 0)
        _ = m.jobFinished(ok, now: 3 * s)
        let w = m.writeCompleted(now: 3 * s)
        #expect(m.stateName == "readingHead" && armed(w) == 8 * s)
        #expect(statuses(m.timerFired(now: 8 * s)) == [408])
    }

    /// A transport failure releases the budget and closes, from any live state.
    @Test func transportFailureReleasesTheBudget() {
        let budget = FakeBudget(limit: 10_000)
        var (m, _) = machine(budget: budget)
        _ = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\nab"), now: 0)
        #expect(budget.inUse == 500)
        #expect(closes(m.transportFailed()) && budget.inUse == 0 && m.isClosed)
        #expect(m.transportFailed().isEmpty)
    }

    /// An answer the client does not take is cut at the write deadline.
    @Test func slowReaderIsCutAtTheWriteDeadline() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes(get("/a")), now: 0)
        _ = m.jobFinished(ok, now: 1 * s)
        let t = m.timerFired(now: 61 * s)
        #expect(closes(t) && timeouts(t) == [.write])
    }

    /// A late timer for a deadline since replaced does nothing.
    @Test func staleTimerIsIgnored() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes(get("/a")), now: 0)
        #expect(m.timerFired(now: 5 * s).isEmpty)
        #expect(m.stateName == "dispatched")
    }

    // MARK: pipelining and half-close

    @Test func pipelinedRequestsAreDispatchedOneAtATimeInOrder() {
        var (m, _) = machine()
        var a = m.bytesRead(bytes(get("/a") + post("/b", "xy") + get("/c", "Connection: close\r\n")), now: 0)
        var order = targets(a)
        #expect(order == ["/a"])
        for _ in 0..<2 {
            _ = m.jobFinished(ok, now: 0)
            a = m.writeCompleted(now: 0)
            order += targets(a)
        }
        #expect(order == ["/a", "/b", "/c"])
        let last = m.jobFinished(ok, now: 0)
        #expect(sent(last)[0].keepAlive == false)
        #expect(closes(m.writeCompleted(now: 0)))
    }

    /// Input arriving while a request is with the application is buffered up to a bound, then
    /// reading stops (back-pressure) until the answer is out.
    @Test func pipelinedInputIsBoundedWhileDispatched() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes(get("/a")), now: 0)
        let a = m.bytesRead([UInt8](repeating: 65, count: 3000), now: 0)
        #expect(has(a) { if case .stopReading = $0 { return true } else { return false } })
    }

    /// A half-closed client still gets an answer to every request it pipelined before EOF.
    @Test func halfClosedClientGetsEveryPipelinedAnswer() {
        var (m, _) = machine()
        var order = targets(m.bytesRead(bytes(post("/1", "a") + post("/2", "b") + post("/3", "c")), now: 0))
        let eof = m.peerHalfClosed(now: 0)
        #expect(!closes(eof) && has(eof) { if case .stopReading = $0 { return true } else { return false } })
        var closed = false
        for _ in 0..<3 {
            _ = m.jobFinished(ok, now: 0)
            let w = m.writeCompleted(now: 0)
            order += targets(w)
            closed = closes(w)
        }
        #expect(order == ["/1", "/2", "/3"] && closed)
    }

    @Test func halfCloseMidRequestCloses() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"), now: 0)
        #expect(closes(m.peerHalfClosed(now: 0)))
        var (n, _) = machine()
        #expect(closes(n.peerHalfClosed(now: 0)))
    }

    // MARK: 100-continue

    @Test func expectContinueIsAnsweredToHTTP11Only() {
        var (m, _) = machine()
        let a = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"), now: 0)
        #expect(has(a) { if case .sendContinue = $0 { return true } else { return false } } && m.stateName == "awaitingContinue")
        #expect(targets(m.bytesRead(bytes("hi"), now: 1)) == ["/p"])
        var (n, _) = machine()
        let b = n.bytesRead(bytes("POST /p HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"), now: 0)
        #expect(!has(b) { if case .sendContinue = $0 { return true } else { return false } } && n.stateName == "readingBody")
        // Body bytes already sent with the head: no interim answer.
        var (o, _) = machine()
        let c = o.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nab"), now: 0)
        #expect(!has(c) { if case .sendContinue = $0 { return true } else { return false } })
        // An oversized body is refused without inviting it.
        var (p, _) = machine()
        let d = p.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"), now: 0)
        #expect(statuses(d) == [413] && !has(d) { if case .sendContinue = $0 { return true } else { return false } })
    }

    // MARK: framing

    @Test func chunkedBodySplitAtEveryByte() {
        let text = bytes("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: y\r\n\r\n" + get("/next"))
        for split in 0...text.count {
            var (m, _) = machine()
            let a = m.bytesRead(Array(text[0..<split]), now: 0) + m.bytesRead(Array(text[split...]), now: 0)
            let d = dispatched(a)
            #expect(d.count == 1 && d.first.map { String(decoding: $0.1, as: UTF8.self) } == "Wikipedia", "split at \(split)")
            _ = m.jobFinished(ok, now: 0)
            #expect(targets(m.writeCompleted(now: 0)) == ["/next"], "split at \(split)")
        }
        // And one byte at a time.
        var (m, _) = machine()
        var all: [Action] = []
        for b in text { all += m.bytesRead([b], now: 0) }
        #expect(dispatched(all).map { String(decoding: $0.1, as: UTF8.self) } == ["Wikipedia"])
    }

    @Test func lengthBodySplitAtEveryByte() {
        let text = bytes(post("/p", "hello world"))
        for split in 0...text.count {
            var (m, _) = machine()
            let a = m.bytesRead(Array(text[0..<split]), now: 0) + m.bytesRead(Array(text[split...]), now: 0)
            #expect(dispatched(a).map { String(decoding: $0.1, as: UTF8.self) } == ["hello world"], "split at \(split)")
        }
    }

    /// RFC 9112 §6.3: no Content-Length and no Transfer-Encoding is an empty body (no 411).
    @Test func noLengthIsAnEmptyBody() {
        var (m, _) = machine()
        let d = dispatched(m.bytesRead(bytes("POST /admin/reload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer x\r\n\r\n"), now: 0))
        #expect(d.count == 1 && d[0].1.isEmpty && d[0].0.target == "/admin/reload")
    }

    @Test(arguments: [
        ("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413),
        ("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3E9\r\n", 413),
        ("GET /p HTTP/1.1\r\nHost: t\r\nX: " + String(repeating: "a", count: 1100), 431),
        ("GET /p HTTP/1.1\r\n\r\n", 400),
        ("GET /p HTTP/1.1\nHost: t\n\n", 400),
        ("GET /p HTTP/1.1\r\nHost: t\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\nWiki", 400),
        ("GET /p HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ])
    func refusalsAreAnsweredThenLinger(text: String, status: Int) {
        var (m, _) = machine()
        let a = m.bytesRead(bytes(text), now: 0)
        #expect(statuses(a) == [status], "\(text.prefix(40))")
        #expect(sent(a).first?.keepAlive == false && sent(a).first?.refusal != nil)
        #expect(m.stateName == "writing")
        // Input after a refusal is dropped, not framed.
        #expect(targets(m.bytesRead(bytes(get("/x")), now: 0)).isEmpty)
        let w = m.writeCompleted(now: 0)
        #expect(has(w) { if case .shutdownWriteAndLinger = $0 { return true } else { return false } })
        // Lingering ends at its byte cap, at EOF or at its deadline.
        #expect(closes(m.bytesRead([UInt8](repeating: 0, count: 5000), now: 1)))
    }

    /// The blank-line flood (issue #20): a client sending nothing but CRLF gets a 400 after a
    /// few empty lines and its further input is dropped in the linger, however it is split;
    /// the head scanner examined a handful of bytes, not the megabyte.
    @Test func blankLineFloodIsRefusedAfterAFewEmptyLines() {
        let crlf = [UInt8](repeating: 0, count: 65536).enumerated().map { $0.offset % 2 == 0 ? UInt8(13) : UInt8(10) }
        for piece in [2, 3, 65536] {
            var (m, _) = machine()
            var all: [Action] = []
            var at = 0
            for _ in 0..<16 {  // 1 MiB in all
                while at < crlf.count, !m.isClosed {
                    all += m.bytesRead(Array(crlf[at..<min(at + piece, crlf.count)]), now: 0)
                    at += piece
                }
                at = 0
                if m.stateName == "writing" { all += m.writeCompleted(now: 0) }
            }
            #expect(statuses(all) == [400], "piece \(piece)")
            #expect(m.headScanSteps <= 2 * (HeadScanner.maxLeadingEmptyLines + 1), "piece \(piece): \(m.headScanSteps)")
            #expect(m.bufferedBytes == 0 && (m.stateName == "lingering" || m.isClosed), "piece \(piece)")
        }
    }

    /// A head dripped a byte per read is scanned once in all: the scanner's steps equal the
    /// bytes received (the old scan restarted at byte 0 on every read).
    @Test func drippedHeadIsScannedInLinearTime() {
        let head = bytes("GET /p HTTP/1.1\r\nHost: t\r\nX-Pad: " + String(repeating: "p", count: 900) + "\r\n\r\n")
        var (m, _) = machine()
        var all: [Action] = []
        for b in head { all += m.bytesRead([b], now: 0) }
        #expect(targets(all) == ["/p"] && m.headScanSteps == head.count)
    }

    @Test func lingerEndsAtEOF() {
        var (m, _) = machine()
        _ = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"), now: 0)
        _ = m.writeCompleted(now: 0)
        #expect(closes(m.peerHalfClosed(now: 1)))
    }

    // MARK: memory budget

    @Test func bodiesReserveTheBudgetAndAreRefused503WhenItIsSpent() {
        let budget = FakeBudget(limit: 1500)
        var (a, _) = machine(budget: budget)
        var (b, _) = machine(budget: budget)
        _ = a.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"), now: 0)
        #expect(budget.inUse == 1000 && a.reserved == 1000)
        let refused = b.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"), now: 0)
        #expect(statuses(refused) == [503] && refusals(refused) == [.budgetSpent])
        // Handed to the application with the body, released by the shell when it answers.
        let d = a.bytesRead([UInt8](repeating: 120, count: 1000), now: 0)
        #expect(budget.inUse == 1000 && reservations(d) == [1000] && a.reserved == 0)
        _ = a.jobFinished(ok, now: 0)
        budget.release(1000)
        #expect(budget.inUse == 0)
        // ... or when the connection closes mid-body.
        var (c, _) = machine(budget: budget)
        _ = c.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\nabc"), now: 0)
        #expect(budget.inUse == 900)
        _ = c.peerHalfClosed(now: 0)
        #expect(budget.inUse == 0)
    }

    /// A chunked body that cannot grow within the budget stops being read (back-pressure) and
    /// resumes when bytes are released.
    @Test func chunkedBodyWaitsForBudget() {
        let budget = FakeBudget(limit: 1 << 20)
        var (m, _) = machine(budget: budget)
        _ = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"), now: 0)
        let chunk = bytes("20\r\n" + String(repeating: "z", count: 32) + "\r\n0\r\n\r\n")
        budget.limit = chunk.count + 10  // the input fits, 32 bytes of body do not
        let a = m.bytesRead(chunk, now: 0)
        #expect(has(a) { if case .waitForBudget = $0 { return true } else { return false } })
        #expect(has(a) { if case .stopReading = $0 { return true } else { return false } })
        #expect(m.budgetRetry(now: 1).contains { if case .waitForBudget = $0 { return true } else { return false } })
        budget.limit = 1 << 20
        let r = m.budgetRetry(now: 2)
        #expect(dispatched(r).map(\.1.count) == [32] && budget.inUse == reservations(r).reduce(0, +))
        _ = m.jobFinished(ok, now: 3)
        budget.release(reservations(r)[0])
        #expect(budget.inUse == 0)
    }

    /// The machine's part of the budget invariant: every byte it buffers is reserved, and the
    /// budget holds exactly what it reserved plus the bodies the application still has.
    func accounted(_ m: Machine, _ budget: FakeBudget, app: Int = 0) -> Bool {
        m.bufferedBytes <= m.reserved && budget.inUse == m.reserved + app
    }

    /// Issue #20 (a): a read holding the end of one chunk and a whole larger one used to be
    /// decoded after reserving room for the current chunk only, so the body outgrew its
    /// reservation by up to a read. Now the decoder stops where the room ends.
    @Test func chunkedBodyNeverOutgrowsItsReservation() {
        var config = Self.config
        config.maxBodyBytes = 1 << 20
        let budget = FakeBudget(limit: 4 << 20)
        var (m, _) = machine(budget: budget, config: config)
        _ = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"), now: 0)
        #expect(accounted(m, budget) && m.stateName == "readingBody")
        let big = 0x20000
        let rest = bytes("c\r\n20000\r\n") + [UInt8](repeating: 121, count: big) + bytes("\r\n0\r\n\r\n")
        let a = m.bytesRead(rest, now: 0)
        let held = reservations(a)
        #expect(dispatched(a).map(\.1.count) == [3 + big])
        #expect(held.count == 1 && held[0] >= 3 + big && accounted(m, budget, app: held[0]))
    }

    /// Issue #20 (b): bytes held before a body starts count in the budget: a partial head, and
    /// requests pipelined behind one the application has. Released as they are framed.
    @Test func bytesBeforeABodyCountInTheBudget() {
        let budget = FakeBudget(limit: 1 << 20)
        var (m, _) = machine(budget: budget)
        _ = m.bytesRead(bytes("GET /a HTTP/1.1\r\nHo"), now: 0)
        #expect(budget.inUse == 19 && accounted(m, budget))
        let a = m.bytesRead(bytes("st: t\r\n\r\n"), now: 0)
        #expect(targets(a) == ["/a"] && budget.inUse == 0)
        let pipelined = bytes(get("/b") + "GET /c HT")
        _ = m.bytesRead(pipelined, now: 0)
        #expect(budget.inUse == pipelined.count && accounted(m, budget))
        _ = m.jobFinished(ok, now: 0)
        let w = m.writeCompleted(now: 0)
        #expect(targets(w) == ["/b"] && budget.inUse == 9 && accounted(m, budget))
        _ = m.transportFailed()
        #expect(budget.inUse == 0)
    }

    /// A head the budget cannot hold is refused 503 at once; input pipelined behind a request
    /// in progress that it cannot hold is dropped, and the connection ends after that answer.
    @Test func inputOverTheBudgetIsRefused() {
        let budget = FakeBudget(limit: 10)
        var (m, _) = machine(budget: budget)
        let a = m.bytesRead(bytes(get("/a")), now: 0)
        #expect(refusals(a) == [.budgetSpent] && budget.inUse == 0 && targets(a).isEmpty)
        budget.limit = 1 << 20
        var (n, _) = machine(budget: budget)
        _ = n.bytesRead(bytes(get("/a")), now: 0)
        budget.limit = 0
        let p = n.bytesRead(bytes(get("/b")), now: 0)
        #expect(has(p) { if case .stopReading = $0 { return true } else { return false } } && budget.inUse == 0)
        let f = n.jobFinished(ok, now: 0)
        #expect(statuses(f) == [200] && sent(f)[0].keepAlive == false)
        let w = n.writeCompleted(now: 0)
        #expect(targets(w).isEmpty && has(w) { if case .shutdownWriteAndLinger = $0 { return true } else { return false } })
    }

    /// Issue #20 (c): the connection failing while the application has the request does not
    /// free the body's bytes: they went to the application with the body.
    @Test func transportFailureWhileDispatchedLeavesTheBodyReserved() {
        let budget = FakeBudget(limit: 10_000)
        var (m, _) = machine(budget: budget)
        let a = m.bytesRead(bytes(post("/p", String(repeating: "b", count: 100))), now: 0)
        #expect(reservations(a) == [100] && budget.inUse == 100 && m.reserved == 0)
        #expect(closes(m.transportFailed()))
        #expect(budget.inUse == 100, "released while the application holds the body")
        budget.release(100)  // the shell, when the application answers
        #expect(budget.inUse == 0)
    }

    /// Issue #20 (d): a whole chunked request waiting for budget when the client half-closes
    /// is still answered once the budget allows; a partial one is dropped at once.
    @Test func halfCloseWhileWaitingForBudgetKeepsACompleteRequest() {
        for complete in [true, false] {
            let budget = FakeBudget(limit: 1 << 20)
            var (m, _) = machine(budget: budget)
            _ = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"), now: 0)
            let chunk = bytes("20\r\n" + String(repeating: "z", count: 32) + (complete ? "\r\n0\r\n\r\n" : ""))
            budget.limit = chunk.count + 10
            _ = m.bytesRead(chunk, now: 0)
            let eof = m.peerHalfClosed(now: 1)
            #expect(closes(eof) == !complete, "complete: \(complete)")
            guard complete else { #expect(budget.inUse == 0); continue }
            budget.limit = 1 << 20
            let r = m.budgetRetry(now: 2)
            #expect(dispatched(r).map(\.1.count) == [32])
            _ = m.jobFinished(ok, now: 3)
            #expect(closes(m.writeCompleted(now: 3)))
        }
    }

    /// The machine states a refusal as a status and a reason; the shell renders the SPEC's
    /// JSON error body, the same bytes as before the machine stopped rendering them.
    @Test func refusalsAreRenderedByTheShell() {
        let busy = Machine.Refusal(reason: .budgetSpent).response
        #expect(busy.status == 503 && busy.headers.contains { $0.name == "Retry-After" && $0.value == "1" })
        #expect(String(decoding: busy.body, as: UTF8.self) == #"{"error":{"code":"server_busy","message":"request buffers are full; retry shortly"}}"#)
        let late = Machine.Refusal(reason: .timedOut(.head)).response
        #expect(String(decoding: late.body, as: UTF8.self) == #"{"error":{"code":"request_timeout","message":"request head not received in time"}}"#)
        let big = Machine.Refusal(reason: .malformed(HTTPParser.Failure(status: 431, message: "m"))).response
        #expect(big.status == 431 && String(decoding: big.body, as: UTF8.self).contains(#""code":"header_too_large""#))
        let body = Machine.Refusal(reason: .bodyTooLarge(length: 9, limit: 8)).response
        #expect(String(decoding: body.body, as: UTF8.self) == #"{"error":{"code":"body_too_large","message":"body of 9 bytes is larger than the limit of 8"}}"#)
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
            var m = ConnectionStateMachine(now: 0, config: .init(), budget: FakeBudget(limit: 1024))
            _ = m.jobFinished(HTTPResponse(status: 200), now: 0)
        }
    }

    @Test func bytesAfterCloseIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var m = ConnectionStateMachine(now: 0, config: .init(), budget: FakeBudget(limit: 1024))
            _ = m.timerFired(now: 10_000_000_000)
            _ = m.bytesRead(Array("x".utf8), now: 0)
        }
    }
}
