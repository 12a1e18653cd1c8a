/// A log that cannot be read or written; `path` names the file.
public struct UpdateLogError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}
