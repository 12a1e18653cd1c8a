import Testing
@testable import HTTPTransport

extension ConnectionStateMachineTests {
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
        var limits = Self.limits
        limits.maxBodyBytes = 1 << 20
        let budget = FakeBudget(limit: 4 << 20)
        var (m, _) = machine(budget: budget, limits: limits)
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
}
