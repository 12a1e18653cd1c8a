import COpenSSL
import Foundation

/// Result of one non-blocking read or write.
enum IOResult {
    case bytes(Int)
    case wouldBlock
    case closed
    case failed(String)
}

/// Byte transport of one connection: a plain socket or TLS over it. Both are non-blocking and
/// used only from the connection's queue.
protocol SocketIO: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult
    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult
    /// Writes two buffers in one call where the transport can (`writev`), else the first.
    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOResult
    /// TLS may need the socket writable to make progress on a read (renegotiation, handshake).
    var wantsWritable: Bool { get }
    func shutdown()
}

final class PlainSocketIO: SocketIO {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .closed }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case ECONNRESET, EPIPE, ETIMEDOUT: return .closed
            default: return .failed(String(cString: strerror(errno)))
            }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let n = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .bytes(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case ECONNRESET, EPIPE: return .closed
            default: return .failed(String(cString: strerror(errno)))
            }
        }
    }

    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOResult {
        var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
                   iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)]
        var msg = msghdr()
        while true {
            let n = iov.withUnsafeMutableBufferPointer { v -> Int in
                msg.msg_iov = v.baseAddress
                msg.msg_iovlen = 2
                return sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
            }
            if n >= 0 { return .bytes(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case ECONNRESET, EPIPE: return .closed
            default: return .failed(String(cString: strerror(errno)))
            }
        }
    }

    var wantsWritable: Bool { false }
    func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }
}

/// A server-side TLS context (OpenSSL 3): TLS 1.2+, no compression, no renegotiation.
public final class TLSContext: @unchecked Sendable {
    // The SSL_CTX is immutable after init and OpenSSL contexts are thread-safe for SSL_new.
    let ctx: OpaquePointer

    public init(certificate: String, privateKey: String) throws(ConfigError) {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw ConfigError(key: "server.tls", message: "cannot create a TLS context: \(TLSContext.lastError())") }
        _ = SSL_CTX_set_options(ctx, CSSL_OP_NO_COMPRESSION | CSSL_OP_NO_RENEGOTIATION)
        _ = cssl_ctx_set_min_proto_version(ctx, TLS1_2_VERSION)
        _ = cssl_ctx_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else {
            SSL_CTX_free(ctx)
            throw ConfigError(key: "server.tls.cert", message: "cannot load \(certificate): \(TLSContext.lastError())")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKey, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            SSL_CTX_free(ctx)
            throw ConfigError(key: "server.tls.key", message: "cannot load \(privateKey) or it does not match the certificate: \(TLSContext.lastError())")
        }
        self.ctx = ctx
    }

    deinit { SSL_CTX_free(ctx) }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown error" }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

final class TLSSocketIO: SocketIO {
    let fd: Int32
    let ssl: OpaquePointer
    private(set) var wantsWritable = false

    init?(fd: Int32, context: TLSContext) {
        guard let ssl = SSL_new(context.ctx) else { return nil }
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        self.fd = fd
        self.ssl = ssl
    }

    deinit { SSL_free(ssl) }

    private func classify(_ ret: Int32) -> IOResult {
        let err = SSL_get_error(ssl, ret)
        switch err {
        case SSL_ERROR_WANT_READ:
            wantsWritable = false
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            wantsWritable = true
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        default:
            ERR_clear_error()
            return .closed
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        ERR_clear_error()
        let n = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if n > 0 { wantsWritable = false; return .bytes(Int(n)) }
        return classify(n)
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        ERR_clear_error()
        let n = SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, 1 << 20)))
        if n > 0 { wantsWritable = false; return .bytes(Int(n)) }
        return classify(n)
    }

    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOResult { write(first) }

    func shutdown() { _ = SSL_shutdown(ssl) }
}
