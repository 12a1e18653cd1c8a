/// HTTP/1.1 request framing: pure functions of bytes, no I/O.
///
/// `ConnectionStateMachine` uses the pieces: `HeadScanner` finds the end of a head (or refuses it
/// early), `parseHead` reads it, and the body is taken by length or by `ChunkedDecoder`,
/// incrementally. `parse` frames one whole buffered request with the same pieces (tests use it).
/// Framing follows RFC 9112 and refuses what request smuggling relies on: bare LF line ends
/// (400), an HTTP/1.1 request without exactly one Host (400), Content-Length together with
/// Transfer-Encoding (400), a Transfer-Encoding other than `chunked` (501), several
/// Content-Length values that differ or are not plain digits (400), obsolete line folding (400),
/// chunk sizes that overflow (400). No Content-Length and no Transfer-Encoding is an empty body.
struct HTTPParser: Sendable {
    struct Limits: Sendable, Equatable {
        var maxHeaderBytes: Int
        var maxBodyBytes: Int
        init(maxHeaderBytes: Int = 16384, maxBodyBytes: Int = 8 << 20) {
            self.maxHeaderBytes = maxHeaderBytes
            self.maxBodyBytes = maxBodyBytes
        }
    }

    /// A parsed head, before the body is complete.
    struct Head: Sendable {
        var method: String
        var target: String
        var minorVersion: Int
        var headers: [(name: String, value: String)]
        var contentLength: Int?
        var chunked: Bool
        var expectContinue: Bool
        /// Bytes of the head including the blank line.
        var length: Int
    }

    enum Outcome: Sendable {
        /// Need more bytes. `head` is set once the head is complete (for 100-continue and the
        /// body timeout).
        case incomplete(head: Head?)
        /// A whole request: its head, its body, and how many buffered bytes it used.
        case request(head: Head, body: [UInt8], consumed: Int)
        /// The bytes cannot be a valid request: answer `status` and close.
        case failure(status: Int, message: String)
    }

    var limits: Limits
    init(limits: Limits = Limits()) { self.limits = limits }

    /// Frames one whole request from `bytes` (a convenience over `scanHead`, `parseHead` and
    /// `ChunkedDecoder`, which the connection state machine drives incrementally).
    func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Outcome {
        let headEnd: Int
        switch Self.scanHead(UnsafeRawBufferPointer(bytes), maxHeaderBytes: limits.maxHeaderBytes) {
        case .incomplete: return .incomplete(head: nil)
        case .failure(let f): return .failure(status: f.status, message: f.message)
        case .complete(let end): headEnd = end
        }
        var head: Head
        switch parseHead(UnsafeBufferPointer(rebasing: bytes[0..<headEnd])) {
        case .success(let h): head = h
        case .failure(let f): return .failure(status: f.status, message: f.message)
        }
        head.length = headEnd
        if head.chunked {
            var decoder = ChunkedDecoder(maxBody: limits.maxBodyBytes)
            var body: [UInt8] = []
            let rest = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[headEnd...])
            switch decoder.feed(rest, into: &body) {
            case .needMore, .needRoom: return .incomplete(head: head)
            case .failure(let f): return .failure(status: f.status, message: f.message)
            case .done(let used): return .request(head: head, body: body, consumed: headEnd + used)
            }
        }
        let length = head.contentLength ?? 0
        if length > limits.maxBodyBytes {
            return .failure(status: 413, message: "body of \(length) bytes is larger than the limit of \(limits.maxBodyBytes)")
        }
        guard bytes.count - headEnd >= length else { return .incomplete(head: head) }
        return .request(head: head, body: Array(bytes[headEnd..<(headEnd + length)]), consumed: headEnd + length)
    }

    enum HeadScan: Equatable, Sendable {
        /// No blank line yet, and nothing wrong so far.
        case incomplete
        /// The head ends just before this index (past its CRLFCRLF).
        case complete(end: Int)
        case failure(Failure)
    }

    /// Finds the end of the head in one buffer (a one-shot `HeadScanner`: CRLF line ends only,
    /// at most `HeadScanner.maxLeadingEmptyLines` empty lines before the request line, every
    /// byte counted against `maxHeaderBytes`). The connection keeps a `HeadScanner` across reads
    /// instead, so that a head arriving in pieces is still scanned once.
    static func scanHead(_ b: UnsafeRawBufferPointer, maxHeaderBytes: Int) -> HeadScan {
        var scanner = HeadScanner(maxHeaderBytes: maxHeaderBytes)
        return scanner.scan(b)
    }

    /// A refusal: the status to answer and why.
    struct Failure: Error, Equatable, Sendable {
        var status: Int
        var message: String
    }

    func parseHead(_ b: UnsafeBufferPointer<UInt8>) -> Result<Head, Failure> {
        // Lines from bytes ("\r\n" is a single Character in Swift, so String splitting would not
        // see the LF). Header bytes must be ASCII or UTF-8; anything else is a 400.
        var lines: [Substring] = []
        var lineStart = 0
        for i in 0..<b.count where b[i] == 10 {
            guard i > lineStart, b[i - 1] == 13 else {
                return .failure(Failure(status: 400, message: "bare LF in the request head (lines must end in CRLF)"))
            }
            let end = i - 1
            guard let line = String(validating: UnsafeBufferPointer(rebasing: b[lineStart..<end]), as: UTF8.self) else {
                return .failure(Failure(status: 400, message: "request head is not valid UTF-8"))
            }
            if line.utf8.contains(13) || line.utf8.contains(0) {
                return .failure(Failure(status: 400, message: "stray CR or NUL in the request head"))
            }
            lines.append(Substring(line))
            lineStart = i + 1
        }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        while let first = lines.first, first.isEmpty { lines.removeFirst() }
        guard let requestLine = lines.first else { return .failure(Failure(status: 400, message: "empty request line")) }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty,
              parts[0].allSatisfy({ $0.isASCII && ($0.isUppercase || $0 == "-" || $0 == "_") }) else {
            return .failure(Failure(status: 400, message: "malformed request line"))
        }
        let version = parts[2]
        let minor: Int
        switch version {
        case "HTTP/1.1": minor = 1
        case "HTTP/1.0": minor = 0
        default:
            if version.hasPrefix("HTTP/") { return .failure(Failure(status: 505, message: "only HTTP/1.0 and HTTP/1.1 are served")) }
            return .failure(Failure(status: 400, message: "malformed request line"))
        }
        var headers: [(name: String, value: String)] = []
        var contentLength: Int?
        var transferEncoding: String?
        var expectContinue = false
        var hosts = 0
        for line in lines.dropFirst() {
            if line.first == " " || line.first == "\t" {
                return .failure(Failure(status: 400, message: "obsolete header line folding is not accepted"))
            }
            guard let colon = line.firstIndex(of: ":") else {
                return .failure(Failure(status: 400, message: "header line without a colon"))
            }
            let name = line[..<colon]
            guard !name.isEmpty, name.allSatisfy(Self.isTokenChar) else {
                return .failure(Failure(status: 400, message: "invalid header name"))
            }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: [" ", "\t"])
            let n = String(name)
            headers.append((n, value))
            if n.caseInsensitiveEquals("content-length") {
                // A list of identical values is tolerated (RFC 9110 §8.6); anything else is not.
                for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let v = item.trimmingCharacters(in: [" ", "\t"])
                    guard !v.isEmpty, v.count <= 18, v.allSatisfy({ $0.isASCII && $0.isNumber }), let parsed = Int(v) else {
                        return .failure(Failure(status: 400, message: "invalid Content-Length"))
                    }
                    if let existing = contentLength, existing != parsed {
                        return .failure(Failure(status: 400, message: "conflicting Content-Length values"))
                    }
                    contentLength = parsed
                }
            } else if n.caseInsensitiveEquals("transfer-encoding") {
                transferEncoding = (transferEncoding.map { $0 + "," } ?? "") + value
            } else if n.caseInsensitiveEquals("host") {
                hosts += 1
            } else if n.caseInsensitiveEquals("expect") {
                guard value.caseInsensitiveEquals("100-continue") else {
                    return .failure(Failure(status: 417, message: "only Expect: 100-continue is supported"))
                }
                expectContinue = true
            }
        }
        var chunked = false
        if let te = transferEncoding {
            if contentLength != nil {
                return .failure(Failure(status: 400, message: "Content-Length and Transfer-Encoding together are refused"))
            }
            let codings = te.split(separator: ",").map { $0.trimmingCharacters(in: [" ", "\t"]).lowercased() }
            guard codings == ["chunked"] else {
                return .failure(Failure(status: 501, message: "Transfer-Encoding \(te) is not supported (only chunked)"))
            }
            if minor == 0 { return .failure(Failure(status: 400, message: "Transfer-Encoding in an HTTP/1.0 request")) }
            chunked = true
        }
        // RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host.
        if minor >= 1 && hosts == 0 { return .failure(Failure(status: 400, message: "an HTTP/1.1 request needs a Host header")) }
        if hosts > 1 { return .failure(Failure(status: 400, message: "more than one Host header")) }
        // No Content-Length and no Transfer-Encoding means an empty body (RFC 9112 §6.3), not a 411:
        // `curl -X POST` without data sends exactly that.
        let method = String(parts[0])
        // 100-continue is an HTTP/1.1 mechanism: an HTTP/1.0 client would not understand the interim answer.
        return .success(Head(method: method, target: String(parts[1]), minorVersion: minor, headers: headers,
                             contentLength: contentLength, chunked: chunked, expectContinue: expectContinue && minor >= 1, length: 0))
    }

    static func isTokenChar(_ c: Character) -> Bool {
        guard c.isASCII, let v = c.asciiValue else { return false }
        if (v >= 48 && v <= 57) || (v >= 65 && v <= 90) || (v >= 97 && v <= 122) { return true }
        return "!#$%&'*+-.^_`|~".contains(c)
    }
}
