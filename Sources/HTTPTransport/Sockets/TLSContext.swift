import COpenSSL
import Foundation
import Logging
import Synchronization

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
    public let profile: TLSProfile

    /// TLS 1.2 suites of the intermediate profile: ECDHE (forward secrecy) + AES-GCM/ChaCha20.
    static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    static let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    static let groups = "X25519:P-256:P-384"

    /// Loads `certificateFile` (a PEM chain) and `privateKeyFile` (PEM) and checks that they match.
    public init(certificateFile certificate: String, privateKeyFile privateKey: String, profile: TLSProfile = .intermediate) throws(TLSError) {
        self.ctx = try Self.make(certificate: certificate, privateKey: privateKey, profile: profile)
        self.profile = profile
    }

    private static func make(certificate: String, privateKey: String, profile: TLSProfile) throws(TLSError) -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw .noContext(reason: TLSContext.lastError()) }
        _ = SSL_CTX_set_options(ctx, CSSL_OP_NO_COMPRESSION | CSSL_OP_NO_RENEGOTIATION)
        _ = cssl_ctx_set_min_proto_version(ctx, profile == .modern ? TLS1_3_VERSION : TLS1_2_VERSION)
        _ = cssl_ctx_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        guard SSL_CTX_set_cipher_list(ctx, tls12Ciphers) == 1, SSL_CTX_set_ciphersuites(ctx, tls13Suites) == 1,
              cssl_ctx_set1_groups_list(ctx, groups) == 1 else {
            SSL_CTX_free(ctx)
            throw .profileRefused(profile, reason: TLSContext.lastError())
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else {
            SSL_CTX_free(ctx)
            throw .certificate(path: certificate, reason: TLSContext.lastError())
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKey, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            SSL_CTX_free(ctx)
            throw .privateKey(path: privateKey, reason: TLSContext.lastError())
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
