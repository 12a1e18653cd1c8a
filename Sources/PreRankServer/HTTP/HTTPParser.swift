/// Incremental HTTP/1.1 request parser: a pure function of the bytes buffered so far.
///
/// The connection calls `parse` each time bytes arrive; it answers `.incomplete` until one whole
/// request (head and body) is buffered, then `.request` with the number of bytes it used, so
/// pipelined requests are taken one at a time, in order. Framing follows RFC 9112 and refuses
/// what request smuggling relies on: Content-Length together with Transfer-Encoding (400), a
/// Transfer-Encoding other than `chunked` (501), several Content-Length values that differ or
/// are not plain digits (400), obsolete line folding (400), chunk sizes that overflow (400).
public struct HTTPParser: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxHeaderBytes: Int
        public var maxBodyBytes: Int
        public init(maxHeaderBytes: Int = 16384, maxBodyBytes: Int = 8 << 20) {
            self.maxHeaderBytes = maxHeaderBytes
            self.maxBodyBytes = maxBodyBytes
        }
    }

    /// A parsed head, before the body is complete.
    public struct Head: Sendable {
        public var method: String
        public var target: String
        public var minorVersion: Int
        public var headers: [(name: String, value: String)]
        public var contentLength: Int?
        public var chunked: Bool
        public var expectContinue: Bool
        /// Bytes of the head including the blank line.
        public var length: Int
    }

    public enum Outcome: Sendable {
        /// Need more bytes. `head` is set once the head is complete (for 100-continue and the
        /// body timeout).
        case incomplete(head: Head?)
        /// A whole request: its head, its body, and how many buffered bytes it used.
        case request(head: Head, body: [UInt8], consumed: Int)
        /// The bytes cannot be a valid request: answer `status` and close.
        case failure(status: Int, message: String)
    }

    public var limits: Limits
    public init(limits: Limits = Limits()) { self.limits = limits }

    public func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Outcome {
        // Tolerate empty lines before a request line (RFC 9112 §2.2).
        var start = 0
        while start + 1 < bytes.count, bytes[start] == 13, bytes[start + 1] == 10 { start += 2 }
        while start < bytes.count, bytes[start] == 10 { start += 1 }
        guard let headEnd = Self.findHeadEnd(bytes, from: start) else {
            if bytes.count - start > limits.maxHeaderBytes {
                return .failure(status: 431, message: "request head is larger than \(limits.maxHeaderBytes) bytes")
            }
            return .incomplete(head: nil)
        }
        if headEnd - start > limits.maxHeaderBytes {
            return .failure(status: 431, message: "request head is larger than \(limits.maxHeaderBytes) bytes")
        }
        var head: Head
        switch parseHead(UnsafeBufferPointer(rebasing: bytes[start..<headEnd])) {
        case .success(let h): head = h
        case .failure(let f): return .failure(status: f.status, message: f.message)
        }
        head.length = headEnd
        if head.chunked {
            switch Self.dechunk(bytes, from: headEnd, maxBody: limits.maxBodyBytes) {
            case .incomplete: return .incomplete(head: head)
            case .failure(let status, let message): return .failure(status: status, message: message)
            case .complete(let body, let end): return .request(head: head, body: body, consumed: end)
            }
        }
        let length = head.contentLength ?? 0
        if length > limits.maxBodyBytes {
            return .failure(status: 413, message: "body of \(length) bytes is larger than the limit of \(limits.maxBodyBytes)")
        }
        guard bytes.count - headEnd >= length else { return .incomplete(head: head) }
        return .request(head: head, body: Array(bytes[headEnd..<(headEnd + length)]), consumed: headEnd + length)
    }

    /// Index just past the blank line ending the head (CRLFCRLF, or LFLF from lenient clients).
    static func findHeadEnd(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        var i = start
        while i < b.count {
            if b[i] == 10 {
                if i + 1 < b.count && b[i + 1] == 10 { return i + 2 }
                if i + 2 < b.count && b[i + 1] == 13 && b[i + 2] == 10 { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    struct Failure: Error { var status: Int; var message: String }

    func parseHead(_ b: UnsafeBufferPointer<UInt8>) -> Result<Head, Failure> {
        // Lines from bytes ("\r\n" is a single Character in Swift, so String splitting would not
        // see the LF). Header bytes must be ASCII or UTF-8; anything else is a 400.
        var lines: [Substring] = []
        var lineStart = 0
        for i in 0..<b.count where b[i] == 10 {
            var end = i
            if end > lineStart && b[end - 1] == 13 { end -= 1 }
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
        let method = String(parts[0])
        if contentLength == nil && !chunked && (method == "POST" || method == "PUT" || method == "PATCH") {
            return .failure(Failure(status: 411, message: "a \(method) request needs a Content-Length"))
        }
        return .success(Head(method: method, target: String(parts[1]), minorVersion: minor, headers: headers,
                             contentLength: contentLength, chunked: chunked, expectContinue: expectContinue, length: 0))
    }

    static func isTokenChar(_ c: Character) -> Bool {
        guard c.isASCII, let v = c.asciiValue else { return false }
        if (v >= 48 && v <= 57) || (v >= 65 && v <= 90) || (v >= 97 && v <= 122) { return true }
        return "!#$%&'*+-.^_`|~".contains(c)
    }

    enum Dechunked { case incomplete, complete([UInt8], Int), failure(Int, String) }

    /// Decodes a chunked body starting at `start`: `size[;ext] CRLF data CRLF … 0 CRLF trailers CRLF`.
    static func dechunk(_ b: UnsafeBufferPointer<UInt8>, from start: Int, maxBody: Int) -> Dechunked {
        var i = start
        var body: [UInt8] = []
        func line(from p: Int) -> (Range<Int>, next: Int)? {
            var j = p
            while j < b.count {
                if b[j] == 10 { return (p..<((j > p && b[j - 1] == 13) ? j - 1 : j), j + 1) }
                j += 1
            }
            return nil
        }
        while true {
            guard let (sizeLine, afterSize) = line(from: i) else {
                return b.count - i > 1024 ? .failure(400, "chunk size line too long") : .incomplete
            }
            var size = 0
            var digits = 0
            var p = sizeLine.lowerBound
            while p < sizeLine.upperBound {
                let c = b[p]
                let v: Int
                switch c {
                case 48...57: v = Int(c) - 48
                case 65...70: v = Int(c) - 55
                case 97...102: v = Int(c) - 87
                default: v = -1
                }
                if v < 0 { break }
                digits += 1
                guard digits <= 15 else { return .failure(400, "chunk size too large") }
                size = size * 16 + v
                p += 1
            }
            guard digits > 0 else { return .failure(400, "invalid chunk size") }
            if p < sizeLine.upperBound && b[p] != UInt8(ascii: ";") && b[p] != UInt8(ascii: " ") && b[p] != UInt8(ascii: "\t") {
                return .failure(400, "invalid chunk size")
            }
            if size == 0 {
                // Trailers until an empty line.
                var q = afterSize
                while true {
                    guard let (t, next) = line(from: q) else { return .incomplete }
                    if t.isEmpty { return .complete(body, next) }
                    q = next
                }
            }
            guard body.count + size <= maxBody else { return .failure(413, "chunked body is larger than the limit of \(maxBody)") }
            guard b.count >= afterSize + size + 1 else { return .incomplete }
            body.append(contentsOf: b[afterSize..<(afterSize + size)])
            var end = afterSize + size
            if b[end] == 13 {
                guard b.count >= end + 2 else { return .incomplete }
                end += 1
            }
            guard b[end] == 10 else { return .failure(400, "chunk data not followed by CRLF") }
            i = end + 1
        }
    }
}
