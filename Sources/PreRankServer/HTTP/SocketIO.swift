import COpenSSL
import Foundation
import Logging
import Synchronization

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

/// A server-side TLS context (OpenSSL 3) by Mozilla's profiles: no compression, no
/// renegotiation; `intermediate` allows TLS 1.2 with ECDHE key exchange and AEAD ciphers only
/// (no RSA key exchange, no CBC: sslyze's `--mozilla_config=intermediate` check) plus TLS 1.3,
/// `modern` TLS 1.3 only; key-exchange groups X25519, P-256, P-384 (not P-521 or X448).
///
/// The certificate and key can be replaced while serving (`replace(with:)`, on SIGHUP and
/// `POST /admin/reload`): new connections get the new pair, connections already open keep the
/// one they were made with (each `SSL` holds a reference to its context).
public final class TLSContext: @unchecked Sendable {
    // Guarded by `lock`; an SSL_CTX is thread-safe for SSL_new, and each SSL ups its refcount.
    private let lock = NSLock()
    private var ctx: OpaquePointer
    public let profile: PreRankConfig.TLSProfile

    /// TLS 1.2 suites of the intermediate profile: ECDHE (forward secrecy) + AES-GCM/ChaCha20.
    static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    static let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    static let groups = "X25519:P-256:P-384"

    public init(certificate: String, privateKey: String, profile: PreRankConfig.TLSProfile = .intermediate) throws(ConfigError) {
        self.ctx = try Self.make(certificate: certificate, privateKey: privateKey, profile: profile)
        self.profile = profile
    }

    private static func make(certificate: String, privateKey: String, profile: PreRankConfig.TLSProfile) throws(ConfigError) -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw ConfigError(key: "server.tls", message: "cannot create a TLS context: \(TLSContext.lastError())") }
        _ = SSL_CTX_set_options(ctx, CSSL_OP_NO_COMPRESSION | CSSL_OP_NO_RENEGOTIATION)
        _ = cssl_ctx_set_min_proto_version(ctx, profile == .modern ? TLS1_3_VERSION : TLS1_2_VERSION)
        _ = cssl_ctx_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        guard SSL_CTX_set_cipher_list(ctx, tls12Ciphers) == 1, SSL_CTX_set_ciphersuites(ctx, tls13Suites) == 1,
              cssl_ctx_set1_groups_list(ctx, groups) == 1 else {
            SSL_CTX_free(ctx)
            throw ConfigError(key: "server.tls", message: "this OpenSSL refuses the \(profile.rawValue) profile: \(TLSContext.lastError())")
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else {
            SSL_CTX_free(ctx)
            throw ConfigError(key: "server.tls.cert", message: "cannot load \(certificate): \(TLSContext.lastError())")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKey, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            SSL_CTX_free(ctx)
            throw ConfigError(key: "server.tls.key", message: "cannot load \(privateKey) or it does not match the certificate: \(TLSContext.lastError())")
        }
        return ctx
    }

    /// Takes `other`'s certificate, key and settings for every new connection (`other` was
    /// built, so the pair loaded and matched). The profile is a start-time setting.
    public func replace(with other: TLSContext) {
        let new = other.lock.withLock { other.ctx }
        SSL_CTX_up_ref(new)
        let old = lock.withLock { () -> OpaquePointer in
            let old = ctx
            ctx = new
            return old
        }
        SSL_CTX_free(old)
    }

    /// A new server-side SSL on the context in force.
    func newSSL() -> OpaquePointer? { lock.withLock { SSL_new(ctx) } }

    /// SHA-256 of the certificate in force, hex (tests and the reload log line).
    public var certificateFingerprint: String {
        lock.withLock {
            guard let x509 = SSL_CTX_get0_certificate(ctx) else { return "" }
            var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var n: UInt32 = 0
            guard X509_digest(x509, EVP_sha256(), &md, &n) == 1 else { return "" }
            return md.prefix(Int(n)).map { String(format: "%02x", $0) }.joined()
        }
    }

    deinit { SSL_CTX_free(ctx) }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown error" }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Handshakes that failed since start (`prerank_tls_handshake_failures_total`).
    public static var handshakeFailures: Int { failures.load(ordering: .relaxed) }
    private static let failures = Atomic<Int>(0)
    private static let logger = Logger(label: "prerank.tls")

    /// A handshake failed: counted, and logged at debug with OpenSSL's reason (a scanner or an
    /// old client is not an error of the server, but an operator must be able to see why).
    static func recordHandshakeFailure(reason: String) {
        failures.add(1, ordering: .relaxed)
        logger.debug("TLS handshake failed", metadata: ["reason": "\(reason)"])
    }
}

final class TLSSocketIO: SocketIO {
    let fd: Int32
    let ssl: OpaquePointer
    private(set) var wantsWritable = false

    init?(fd: Int32, context: TLSContext) {
        guard let ssl = context.newSSL() else { return nil }
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
            if SSL_is_init_finished(ssl) == 0 {
                let reason: String
                if err == SSL_ERROR_SSL { reason = TLSContext.lastError() }
                else if err == SSL_ERROR_SYSCALL { reason = errno == 0 ? "connection closed during the handshake" : String(cString: strerror(errno)) }
                else { reason = "SSL error \(err)" }
                TLSContext.recordHandshakeFailure(reason: reason)
            }
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
