import HTTPTransport

/// The transport's TLS types seen from the config: a profile by its config spelling, and a
/// failure as a `ConfigError` on the key it concerns. Why here: `TLSContext` knows no config,
/// and a refused certificate must still read `server.tls.cert cannot load …` at start and on
/// `POST /admin/reload`.
extension TLSContext {
    /// The context for `server.tls` at start.
    public convenience init(certificate: String, privateKey: String, profile: PreRankConfig.TLSProfile = .intermediate) throws(ConfigError) {
        try self.init(certificate: certificate, privateKey: privateKey, profile: TLSProfile(profile))
    }

    /// The context for a reload, in the profile the server started with (a start-time setting).
    public convenience init(certificate: String, privateKey: String, profile: TLSProfile) throws(ConfigError) {
        do {
            try self.init(certificateFile: certificate, privateKeyFile: privateKey, profile: profile)
        } catch {
            throw ConfigError(error)
        }
    }
}

extension TLSProfile {
    public init(_ profile: PreRankConfig.TLSProfile) {
        switch profile {
        case .intermediate: self = .intermediate
        case .modern: self = .modern
        }
    }
}

extension ConfigError {
    /// A TLS failure under the key of what failed: the context or profile (`server.tls`), the
    /// certificate (`server.tls.cert`), the key (`server.tls.key`).
    public init(_ error: TLSError) {
        let key: String
        switch error {
        case .noContext, .profileRefused: key = "server.tls"
        case .certificate: key = "server.tls.cert"
        case .privateKey: key = "server.tls.key"
        }
        self.init(key: key, message: error.message)
    }
}
