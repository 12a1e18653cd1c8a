/// Why the server could not start (bind, listen, a host that is not an address): a sentence the
/// runner prints as is.
public struct ServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
}
