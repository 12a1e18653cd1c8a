import Testing
@testable import HTTPTransport

extension ConnectionStateMachineTests {
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
}
