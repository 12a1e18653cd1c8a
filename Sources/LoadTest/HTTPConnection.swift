#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One keep-alive HTTP/1.1 client connection over a blocking socket (Glibc), framing responses
/// by `Content-Length` (or by close when a response has neither a length nor chunking).
///
/// Used by one load-generator worker at a time; not thread-safe.
public final class HTTPConnection {
    public enum Failure: Error, Equatable, Sendable {
        case connect(String)
        case io(String)
        case timeout
        case closed
        case malformed(String)

        /// A short label for error counts.
        public var label: String {
            switch self {
            case .connect: return "connect"
            case .io: return "io"
            case .timeout: return "timeout"
            case .closed: return "closed"
            case .malformed: return "malformed"
            }
        }
    }

    /// A parsed response.
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        /// The server asked to close (or the response was framed by close).
        public var closes: Bool
    }

    private var fd: Int32 = -1
    private let target: LoadTarget
    private let timeoutMs: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)

    public init(target: LoadTarget, timeoutMs: Int) {
        self.target = target
        self.timeoutMs = timeoutMs
    }

    deinit { close() }

    public var isOpen: Bool { fd >= 0 }

    public func close() {
        if fd >= 0 {
            #if canImport(Glibc)
            _ = Glibc.close(fd)
            #else
            _ = Darwin.close(fd)
            #endif
        }
        fd = -1
        buffer.removeAll(keepingCapacity: true)
        start = 0
    }

    /// Connects (getaddrinfo), with TCP_NODELAY and send/receive timeouts.
    public func open() throws(Failure) {
        close()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let host = target.host == "localhost" ? "127.0.0.1" : target.host
        let rc = getaddrinfo(host, String(target.port), &hints, &result)
        guard rc == 0, let first = result else { throw .connect("cannot resolve \(target.host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(result) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0 {
                var one: Int32 = 1
                _ = setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: .init((timeoutMs % 1000) * 1000))
                _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                _ = setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                    fd = s
                    return
                }
                lastError = String(cString: strerror(errno))
                #if canImport(Glibc)
                _ = Glibc.close(s)
                #else
                _ = Darwin.close(s)
                #endif
            }
            ai = a.pointee.ai_next
        }
        throw .connect("cannot connect to \(target.host):\(target.port): \(lastError)")
    }

    /// Sends one request (`head` already formatted, then `body`) and reads its response.
    public func exchange(head: [UInt8], body: [UInt8]) throws(Failure) -> Response {
        if fd < 0 { try open() }
        try writeAll(head)
        try writeAll(body)
        return try readResponse()
    }

    private func writeAll(_ bytes: [UInt8]) throws(Failure) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { sent += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw .timeout }
            throw .io("send: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    private func fill() throws(Failure) -> Bool {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw .timeout }
            throw .io("recv: \(String(cString: strerror(errno)))")
        }
    }

    private func readResponse() throws(Failure) -> Response {
        var headEnd: Int? = nil
        var searched = start
        while headEnd == nil {
            headEnd = Self.findBlankLine(buffer, from: max(start, searched - 3))
            searched = buffer.count
            if headEnd == nil {
                if buffer.count - start > 64 * 1024 { throw .malformed("response head over 64 KB") }
                guard try fill() else { throw buffer.count == start ? .closed : .malformed("connection closed inside the head") }
            }
        }
        let head = try Self.parseHead(buffer[start..<headEnd!])
        start = headEnd! + 4
        var body: [UInt8]
        if let length = head.contentLength {
            while buffer.count - start < length {
                guard try fill() else { throw .malformed("connection closed inside the body") }
            }
            body = Array(buffer[start..<(start + length)])
            start += length
        } else if head.chunked {
            throw .malformed("chunked responses are not supported (the server frames by Content-Length)")
        } else if head.status == 204 || head.status == 304 || (100..<200).contains(head.status) {
            body = []
        } else {
            while try fill() {}
            body = Array(buffer[start...])
            start = buffer.count
            return Response(status: head.status, body: body, closes: true)
        }
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return Response(status: head.status, body: body, closes: head.closes)
    }

    struct Head: Equatable {
        var status: Int
        var contentLength: Int?
        var chunked: Bool
        var closes: Bool
    }

    /// Index of `\r\n\r\n` at or after `from`.
    static func findBlankLine(_ b: [UInt8], from: Int) -> Int? {
        var i = from
        while i + 3 < b.count {
            if b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// Parses a status line and headers (without the final blank line).
    static func parseHead(_ bytes: ArraySlice<UInt8>) throws(Failure) -> Head {
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.") else {
            throw .malformed("bad status line: \(lines.first.map(String.init) ?? "")")
        }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]), (100...999).contains(status) else {
            throw .malformed("bad status line: \(statusLine)")
        }
        var head = Head(status: status, contentLength: nil, chunked: false, closes: statusLine.hasPrefix("HTTP/1.0"))
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" })
            switch name {
            case "content-length":
                guard let n = Int(value.filter { $0 != " " && $0 != "\t" }), n >= 0 else { throw .malformed("bad Content-Length: \(value)") }
                head.contentLength = n
            case "transfer-encoding":
                head.chunked = value.lowercased().contains("chunked")
            case "connection":
                let v = value.lowercased()
                if v.contains("close") { head.closes = true }
                if v.contains("keep-alive") { head.closes = false }
            default:
                break
            }
        }
        return head
    }
}
