import Testing
@testable import HTTPTransport

@Suite struct HTTPParserTests {
    func parse(_ text: String, limits: HTTPParser.Limits = .init()) -> HTTPParser.Outcome {
        parse(Array(text.utf8), limits: limits)
    }

    func parse(_ bytes: [UInt8], limits: HTTPParser.Limits = .init()) -> HTTPParser.Outcome {
        bytes.withUnsafeBufferPointer { HTTPParser(limits: limits).parse($0) }
    }

    func status(_ o: HTTPParser.Outcome) -> Int? {
        if case .failure(let s, _) = o { return s }
        return nil
    }

    @Test func simplePost() {
        let text = "POST /prerank?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
        guard case .request(let head, let body, let consumed) = parse(text) else { Issue.record("not a request"); return }
        #expect(head.method == "POST" && head.target == "/prerank?x=1" && head.minorVersion == 1)
        #expect(body == Array("{}".utf8) && consumed == text.utf8.count)
    }

    /// Fed one byte at a time, the parser says "incomplete" until the last byte, then frames it.
    @Test func byteAtATime() {
        let bytes = Array("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".utf8)
        for n in 0..<bytes.count {
            if case .request = parse(Array(bytes[0..<n])) { Issue.record("complete after \(n) bytes") }
            if status(parse(Array(bytes[0..<n]))) != nil { Issue.record("failure after \(n) bytes") }
        }
        guard case .request(_, let body, _) = parse(bytes) else { Issue.record("not complete"); return }
        #expect(body == Array("hello".utf8))
    }

    @Test func pipelinedRequestsAreTakenInOrder() {
        var bytes = Array("GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxGET /c HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        var targets: [String] = []
        while case .request(let head, _, let consumed) = parse(bytes) {
            targets.append(head.target)
            bytes.removeFirst(consumed)
        }
        #expect(targets == ["/a", "/b", "/c"] && bytes.isEmpty)
    }

    @Test func chunkedBodyWithExtensionsAndTrailers() {
        let text = "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n"
        guard case .request(_, let body, let consumed) = parse(text) else { Issue.record("not complete"); return }
        #expect(String(decoding: body, as: UTF8.self) == "Wikipedia" && consumed == text.utf8.count)
        // Every prefix is incomplete, never an error.
        let bytes = Array(text.utf8)
        for n in 0..<bytes.count { #expect(status(parse(Array(bytes[0..<n]))) == nil) }
    }

    @Test(arguments: [
        ("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("GET /p HTTP/2.0\r\n\r\n", 505),
        ("GET  /p HTTP/1.1\r\n\r\n", 400),
        ("get /p HTTP/1.1\r\n\r\n", 400),
        ("GET /p HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
        ("GET /p HTTP/1.1\r\nHost: a\r\nA: b\r\n folded\r\n\r\n", 400),
        ("GET /p HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
        ("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
    ])
    func malformedRequests(text: String, expected: Int) {
        #expect(status(parse(text)) == expected)
    }

    @Test func headerTooLarge() {
        let big = "GET /p HTTP/1.1\r\nX: " + String(repeating: "a", count: 20000)
        #expect(status(parse(big, limits: .init(maxHeaderBytes: 16384, maxBodyBytes: 100))) == 431)
    }

    /// RFC 9112 §2.2: a bare LF is refused (a proxy in front could frame it differently).
    @Test(arguments: ["POST /p HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi", "GET /p HTTP/1.1\r\nHost: a\n\r\n",
                      "GET /p HTTP/1.1\nHost: a\r\n\r\n", "\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n"])
    func bareLineFeedsAreRefused(text: String) {
        #expect(status(parse(text)) == 400)
    }

    // MARK: head scanning (issue #20: the blank-line flood)

    func scanInPieces(_ bytes: [UInt8], piece: Int, maxHeaderBytes: Int = 16384) -> (HTTPParser.HeadScan, HeadScanner) {
        var scanner = HeadScanner(maxHeaderBytes: maxHeaderBytes)
        var buffer: [UInt8] = []
        var result = HTTPParser.HeadScan.incomplete
        var at = 0
        while at < bytes.count, result == .incomplete {
            buffer += bytes[at..<min(at + piece, bytes.count)]
            at += piece
            result = buffer.withUnsafeBytes { scanner.scan($0) }
        }
        return (result, scanner)
    }

    /// A head arriving a byte at a time is scanned once: the scanner's steps equal the bytes,
    /// where the old scan restarted from byte 0 on every read (quadratic).
    @Test func headScanIsLinearWhenDripped() {
        let head = Array(("GET /p HTTP/1.1\r\nHost: a\r\nX-Pad: " + String(repeating: "p", count: 8000) + "\r\n\r\n").utf8)
        for piece in [1, 7, 4096] {
            let (result, scanner) = scanInPieces(head, piece: piece)
            #expect(result == .complete(end: head.count), "piece \(piece)")
            #expect(scanner.scanned == head.count && scanner.requestStart == 0, "piece \(piece)")
        }
    }

    /// RFC 9112 §2.2: a few empty lines before the request line are ignored, more are a 400 at
    /// once, however the bytes are split, and the scan stops there (no quadratic rescan).
    @Test func manyEmptyLinesBeforeTheRequestLineAreRefused() {
        let few = Array((String(repeating: "\r\n", count: HeadScanner.maxLeadingEmptyLines) + "GET /p HTTP/1.1\r\nHost: a\r\n\r\n").utf8)
        let (ok, okScanner) = scanInPieces(few, piece: 3)
        #expect(ok == .complete(end: few.count) && okScanner.requestStart == 2 * HeadScanner.maxLeadingEmptyLines)
        guard case .request(let head, _, _) = parse(few) else { Issue.record("tolerated empty lines refused"); return }
        #expect(head.target == "/p")
        let flood = [UInt8](repeating: 0, count: 1 << 20).enumerated().map { $0.offset % 2 == 0 ? UInt8(13) : UInt8(10) }
        for piece in [1, 2, 65536] {
            let (result, scanner) = scanInPieces(flood, piece: piece)
            guard case .failure(let f) = result else { Issue.record("flood not refused, piece \(piece)"); continue }
            #expect(f.status == 400 && f.message.contains("empty lines"))
            #expect(scanner.scanned <= 2 * (HeadScanner.maxLeadingEmptyLines + 1), "piece \(piece): \(scanner.scanned) steps")
        }
    }

    /// Every byte before the end of the head counts against the limit, empty lines included,
    /// and the 431 comes as soon as the limit is passed.
    @Test func everyHeadByteCountsAgainstTheLimit() {
        let head = "\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n"
        let n = head.utf8.count
        let scan = { (limit: Int) in Array(head.utf8).withUnsafeBytes { HTTPParser.scanHead($0, maxHeaderBytes: limit) } }
        #expect(scan(n) == .complete(end: n))
        #expect(scan(n - 1) == .failure(HTTPParser.Failure(status: 431, message: "request head is larger than \(n - 1) bytes")))
        let (long, scanner) = scanInPieces(Array(("GET /p HTTP/1.1\r\nX: " + String(repeating: "a", count: 100_000)).utf8), piece: 1000,
                                           maxHeaderBytes: 1024)
        guard case .failure(let f) = long else { Issue.record("oversized head not refused"); return }
        #expect(f.status == 431 && scanner.scanned == 1024)
    }

    @Test(arguments: ["GET /p HTTP/1.1\rHost: a\r\n\r\n", "\r\rGET /p HTTP/1.1\r\n\r\n", "GET /p HTTP/1.1\r\nHost: a\r\n\r\r\n"])
    func aCRNotFollowedByLFIsRefused(text: String) {
        #expect(status(parse(text)) == 400)
    }

    @Test func hostIsRequiredOnHTTP11Only() {
        #expect(status(parse("GET /p HTTP/1.1\r\n\r\n")) == 400)
        #expect(status(parse("GET /p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")) == 400)
        guard case .request = parse("GET /p HTTP/1.0\r\n\r\n") else { Issue.record("HTTP/1.0 without Host refused"); return }
    }

    /// No Content-Length and no Transfer-Encoding: an empty body (RFC 9112 §6.3), not a 411.
    @Test func noLengthIsAnEmptyBody() {
        let text = "POST /admin/reload HTTP/1.1\r\nHost: a\r\n\r\n"
        guard case .request(_, let body, let consumed) = parse(text) else { Issue.record("not a request"); return }
        #expect(body.isEmpty && consumed == text.utf8.count)
    }

    @Test func expectContinueOnlyForHTTP11() {
        guard case .incomplete(let h11?) = parse("POST /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"),
              case .incomplete(let h10?) = parse("POST /p HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n") else {
            Issue.record("heads not parsed"); return
        }
        #expect(h11.expectContinue && !h10.expectContinue)
    }

    @Test func gzipRoundTripAndBombLimit() throws {
        let data = Array(String(repeating: "prerank ", count: 1000).utf8)
        let z = try #require(Gzip.deflate(data))
        #expect(z.count < data.count / 10)
        #expect(try Gzip.inflate(z, limit: data.count) == data)
        #expect(throws: Gzip.Failure.tooLarge) { try Gzip.inflate(z, limit: data.count - 1) }
        #expect(throws: Gzip.Failure.corrupt) { try Gzip.inflate(Array(z.prefix(10)), limit: 1 << 20) }
    }

    /// A zlib failure (here an invalid level, which deflateInit2 refuses) sends the body as is
    /// with no Content-Encoding: the label must describe the bytes sent.
    @Test func failedGzipFallsBackToIdentity() throws {
        let body = Array(String(repeating: "prerank ", count: 1000).utf8)
        #expect(Gzip.deflate(body, level: 42) == nil)
        let plain = HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: body)
        let failed = Gzip.encode(plain, acceptsGzip: true, threshold: 10, level: 42)
        #expect(failed.body == body)
        #expect(!failed.headers.contains { $0.name.lowercased() == "content-encoding" })
        let ok = Gzip.encode(plain, acceptsGzip: true, threshold: 10)
        #expect(ok.headers.contains { $0.name == "Content-Encoding" && $0.value == "gzip" })
        #expect(try Gzip.inflate(ok.body, limit: body.count) == body)
        #expect(Gzip.encode(plain, acceptsGzip: false, threshold: 10).body == body)
    }
}
