import Foundation

/// A reload that was refused; `key` names the config key or file at fault.
public struct ReloadError: Error, Sendable, CustomStringConvertible {
    public var key: String
    public var message: String
    public var description: String { "\(key): \(message)" }
}
