import Testing
@testable import HTTPTransport

extension ConnectionStateMachineTests {
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
}
