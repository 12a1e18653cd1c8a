/// Why a config file was refused: the full key path (`server.port`, `fusion.gamma`; empty for
/// the file as a whole) and what is wrong with it.
///
/// `description` is one line, so that `prerank validate-config`, the server's start-up error and
/// a refused `/admin/reload` all print the same sentence: `server.port must be 0...65535 (line 3)`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String {
        let text = key.isEmpty ? message : key + " " + message
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
