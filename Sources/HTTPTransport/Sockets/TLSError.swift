/// Why a `TLSContext` could not be built. The server maps each case to the config key it
/// concerns (`server.tls`, `server.tls.cert`, `server.tls.key`); `message` is the sentence after
/// the key, with OpenSSL's reason.
public enum TLSError: Error, Sendable, Equatable {
    /// OpenSSL could not make a context at all.
    case noContext(reason: String)
    /// This OpenSSL refuses the profile's protocol versions, suites or groups.
    case profileRefused(TLSProfile, reason: String)
    /// The certificate chain file could not be loaded.
    case certificate(path: String, reason: String)
    /// The private key could not be loaded, or it does not match the certificate.
    case privateKey(path: String, reason: String)

    public var message: String {
        switch self {
        case .noContext(let reason): return "cannot create a TLS context: \(reason)"
        case .profileRefused(let profile, let reason): return "this OpenSSL refuses the \(profile.rawValue) profile: \(reason)"
        case .certificate(let path, let reason): return "cannot load \(path): \(reason)"
        case .privateKey(let path, let reason): return "cannot load \(path) or it does not match the certificate: \(reason)"
        }
    }
}
