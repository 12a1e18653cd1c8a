/// Mozilla's server-side TLS configurations (https://wiki.mozilla.org/Security/Server_Side_TLS),
/// the two the transport offers.
///
/// Why the transport's own type: the server's config has its own spelling of the choice and
/// the server maps one to the other (`TLSContext+Config.swift`), so the transport needs no
/// config types. The raw values are the profiles' names, as messages print them.
public enum TLSProfile: String, Sendable, Equatable, CaseIterable {
    /// TLS 1.2 with ECDHE + AEAD suites only, and TLS 1.3; groups X25519, P-256, P-384.
    case intermediate
    /// TLS 1.3 only (clients from 2018 on).
    case modern
}
