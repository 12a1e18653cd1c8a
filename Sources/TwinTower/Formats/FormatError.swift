/// A file that cannot be used: what file, and a one-line reason naming the offending part
/// (tensor, key, field, line).
public struct FormatError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var message: String

    public init(_ file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { file.isEmpty ? message : "\(file): \(message)" }
}
