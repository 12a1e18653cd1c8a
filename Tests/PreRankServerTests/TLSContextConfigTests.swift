import Testing
import HTTPTransport
@testable import PreRankServer

/// The transport's TLS failures read as config errors on the key they concern, the same
/// sentences as when `TLSContext` threw `ConfigError` itself (start-up error, refused reload).
@Suite struct TLSContextConfigTests {
    @Test func aMissingCertificateIsAnErrorOnServerTlsCert() {
        #expect {
            _ = try TLSContext(certificate: "/nonexistent/cert.pem", privateKey: "/nonexistent/key.pem", profile: PreRankConfig.TLSProfile.modern)
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.key == "server.tls.cert" && e.message.hasPrefix("cannot load /nonexistent/cert.pem: ")
        }
    }

    @Test func eachFailureHasItsKey() {
        #expect(ConfigError(TLSError.noContext(reason: "r")) == ConfigError(key: "server.tls", message: "cannot create a TLS context: r"))
        #expect(ConfigError(TLSError.profileRefused(.modern, reason: "r"))
            == ConfigError(key: "server.tls", message: "this OpenSSL refuses the modern profile: r"))
        #expect(ConfigError(TLSError.privateKey(path: "k", reason: "r"))
            == ConfigError(key: "server.tls.key", message: "cannot load k or it does not match the certificate: r"))
        #expect(PreRankConfig.TLSProfile.allCases.map { TLSProfile($0).rawValue } == PreRankConfig.TLSProfile.allCases.map(\.rawValue))
    }
}
