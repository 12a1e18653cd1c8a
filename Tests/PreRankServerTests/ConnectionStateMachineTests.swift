import Testing
@testable import PreRankServer

/// Drives `ConnectionStateMachine` through its states with a mock clock (plain `UInt64` ns):
/// no sockets, no sleeping. Each test feeds events and checks the actions.
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

    func machine(now: UInt64 = 0, budget: MemoryBudget = MemoryBudget(limit: 1 << 20)) -> (Machine, [Action]) {
        var m = Machine(now: now, config: Self.config, budget: budget)
        let a = m.start()
        return (m, a)
    }

    // MARK: action helpers

    func sent(_ actions: [Action]) -> [Machine.Outbound] {
        actions.compactMap { if case .send(let o) = $0 { return o } else { return nil } }
    }
    func statuses(_ actions: [Action]) -> [Int] { sent(actions).map(\.response.status) }
    func dispatched(_ actions: [Action]) -> [(HTTPParser.Head, [UInt8])] {
        actions.compactMap { if case .dispatch(let h, let b) = $0 { return (h, b) } else { return nil } }
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
        #expect(statuses(a) == [408] && timeouts(a) == [.head] && sent(a).first?.keepAlive == false && sent(a).first?.isRefusal == true)
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
        let budget = MemoryBudget(limit: 10_000)
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
        let budget = MemoryBudget(limit: 10_000)
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
        #expect(sent(a).first?.keepAlive == false && sent(a).first?.isRefusal == true)
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
        let budget = MemoryBudget(limit: 1500)
        var (a, _) = machine(budget: budget)
        var (b, _) = machine(budget: budget)
        _ = a.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"), now: 0)
        #expect(budget.inUse == 1000 && a.reserved == 1000)
        let refused = b.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"), now: 0)
        #expect(statuses(refused) == [503])
        #expect(sent(refused)[0].response.headers.contains { $0.name == "Retry-After" })
        // Released when the request is answered.
        _ = a.bytesRead([UInt8](repeating: 120, count: 1000), now: 0)
        #expect(budget.inUse == 1000)
        _ = a.jobFinished(ok, now: 0)
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
        let budget = MemoryBudget(limit: 1000)
        #expect(budget.reserve(990))
        var (m, _) = machine(budget: budget)
        let a = m.bytesRead(bytes("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" + String(repeating: "z", count: 32) + "\r\n0\r\n\r\n"), now: 0)
        #expect(has(a) { if case .waitForBudget = $0 { return true } else { return false } })
        #expect(has(a) { if case .stopReading = $0 { return true } else { return false } })
        #expect(m.budgetRetry(now: 1).contains { if case .waitForBudget = $0 { return true } else { return false } })
        budget.release(990)
        let r = m.budgetRetry(now: 2)
        #expect(dispatched(r).map(\.1.count) == [32])
        _ = m.jobFinished(ok, now: 3)
        #expect(budget.inUse == 0)
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
            var m = ConnectionStateMachine(now: 0, config: .init(), budget: MemoryBudget(limit: 1024))
            _ = m.jobFinished(HTTPResponse(status: 200), now: 0)
        }
    }

    @Test func bytesAfterCloseIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var m = ConnectionStateMachine(now: 0, config: .init(), budget: MemoryBudget(limit: 1024))
            _ = m.timerFired(now: 10_000_000_000)
            _ = m.bytesRead(Array("x".utf8), now: 0)
        }
    }
}
