#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenSSL
import Foundation

/// A blocking HTTP/1.1 client for the admin routes of one replica (`prerank upsert-items`): plain
/// HTTP or TLS (`https://`, the server's own `server.tls`), one request at a time on a keep-alive
/// connection, responses framed by Content-Length (as the server frames them).
///
/// TLS verifies the server's certificate chain (the system's CAs, or `caFile`) and its name
/// against the URL's host; there is no switch to skip that, because the point of TLS here is that
/// the admin token reaches only the server it is meant for.
public final class AdminClient {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    public let host: String
    public let port: UInt16
    public let tls: Bool
    private let caFile: String?
    private let timeoutSeconds: Int
    private var fd: Int32 = -1
    private var ctx: OpaquePointer?
    private var ssl: OpaquePointer?
    private var buffer: [UInt8] = []

    public init(host: String, port: UInt16, tls: Bool, caFile: String? = nil, timeoutSeconds: Int = 60) {
        self.host = host
        self.port = port
        self.tls = tls
        self.caFile = caFile
        self.timeoutSeconds = timeoutSeconds
    }

    deinit { close() }

    public func close() {
        if let ssl { SSL_free(ssl) }
        ssl = nil
        if let ctx { SSL_CTX_free(ctx) }
        ctx = nil
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
        buffer = []
    }

    /// Sends one request and reads the answer; reconnects once when a kept-alive connection was
    /// closed by the server before this request.
    public func send(method: String, path: String, headers: [(String, String)], body: [UInt8]) throws(Failure) -> Response {
        let hostHeader = (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let bytes = Array(head.utf8) + body
        let reused = fd >= 0
        do {
            if fd < 0 { try connect() }
            try write(bytes)
            return try readResponse()
        } catch {
            close()
            guard reused else { throw error }
            try connect()
            try write(bytes)
            return try readResponse()
        }
    }

    private func connect() throws(Failure) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else { throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(result) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0 {
                var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
                _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                _ = setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if Glibc.connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { fd = s; break }
                lastError = String(cString: strerror(errno))
                _ = Glibc.close(s)
            }
            ai = a.pointee.ai_next
        }
        guard fd >= 0 else { throw Failure(description: "cannot connect to \(host):\(port): \(lastError)") }
        guard tls else { return }
        guard let c = SSL_CTX_new(TLS_client_method()) else { throw Failure(description: "cannot create a TLS context") }
        ctx = c
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
        let loaded = caFile.map { SSL_CTX_load_verify_locations(c, $0, nil) } ?? SSL_CTX_set_default_verify_paths(c)
        guard loaded == 1 else { throw Failure(description: "cannot load CA certificates\(caFile.map { " from \($0)" } ?? ""): \(Self.lastError())") }
        guard let s = SSL_new(c) else { throw Failure(description: "cannot create a TLS session") }
        ssl = s
        SSL_set_fd(s, fd)
        // The name the certificate must carry (an IP address is matched as one) and SNI.
        var address = in_addr()
        if inet_pton(AF_INET, host, &address) == 1 || host.contains(":") {
            _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), host)
        } else {
            _ = SSL_set1_host(s, host)
            _ = host.withCString { SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
        }
        ERR_clear_error()
        guard SSL_connect(s) == 1 else {
            let verify = SSL_get_verify_result(s)
            let reason = verify != Int(X509_V_OK) ? String(cString: X509_verify_cert_error_string(verify)) : Self.lastError()
            throw Failure(description: "TLS handshake with \(host):\(port) failed: \(reason)")
        }
    }

    private func write(_ bytes: [UInt8]) throws(Failure) {
        var sent = 0
        while sent < bytes.count {
            let n: Int = bytes.withUnsafeBytes { raw in
                if let ssl { return Int(SSL_write(ssl, raw.baseAddress! + sent, Int32(min(raw.count - sent, 1 << 20)))) }
                return Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { sent += n; continue }
            if n < 0 && errno == EINTR && ssl == nil { continue }
            throw Failure(description: "send to \(host):\(port): \(ssl == nil ? String(cString: strerror(errno)) : Self.lastError())")
        }
    }

    /// More bytes into `buffer`; false at the end of the stream.
    private func fill() throws(Failure) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n: Int = chunk.withUnsafeMutableBytes { raw in
                if let ssl { return Int(SSL_read(ssl, raw.baseAddress, Int32(raw.count))) }
                return Glibc.recv(fd, raw.baseAddress, raw.count, 0)
            }
            if n > 0 { buffer += chunk[0..<n]; return true }
            if n == 0 { return false }
            if ssl == nil && errno == EINTR { continue }
            if let ssl, SSL_get_error(ssl, Int32(n)) == SSL_ERROR_ZERO_RETURN { return false }
            throw Failure(description: "receive from \(host):\(port): \(ssl == nil ? String(cString: strerror(errno)) : Self.lastError())")
        }
    }

    private func readResponse() throws(Failure) -> Response {
        let blank: [UInt8] = [13, 10, 13, 10]
        var end: Int?
        while true {
            if buffer.count >= 4, let e = (0...(buffer.count - 4)).first(where: { buffer[$0..<($0 + 4)].elementsEqual(blank) }) { end = e; break }
            guard buffer.count < 64 * 1024 else { throw Failure(description: "response head from \(host):\(port) over 64 KB") }
            guard try fill() else { throw Failure(description: "\(host):\(port) closed the connection before answering") }
        }
        let lines = String(decoding: buffer[..<end!], as: UTF8.self).components(separatedBy: "\r\n")
        let status = lines.first.flatMap { l in l.split(separator: " ").dropFirst().first.flatMap { Int($0) } }
        guard let status else { throw Failure(description: "bad status line from \(host):\(port): \(lines.first ?? "")") }
        var length = 0
        var closes = false
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            if parts[0].lowercased() == "content-length" { length = Int(parts[1]) ?? 0 }
            if parts[0].lowercased() == "connection" && parts[1].lowercased() == "close" { closes = true }
        }
        let bodyStart = end! + 4
        while buffer.count < bodyStart + length {
            guard try fill() else { throw Failure(description: "\(host):\(port) closed the connection inside the body") }
        }
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        buffer.removeFirst(bodyStart + length)
        if closes { close() }
        return Response(status: status, body: body)
    }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown TLS error" }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
