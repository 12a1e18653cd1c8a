import Testing
@testable import PreRankServer

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
