/// A request as the application sees it: head parsed, body complete (de-chunked, inflated).
public struct HTTPRequest: Sendable {
    public var method: String
    /// Path without the query string, e.g. `/prerank`.
    public var path: String
    public var query: String
    /// `HTTP/1.1` → 1, `HTTP/1.0` → 0.
    public var minorVersion: Int
    /// Header fields in arrival order, names as sent.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Monotonic nanoseconds when the whole request had arrived (the budget counts from here).
    public var receivedAt: UInt64

    public init(method: String, path: String, query: String = "", minorVersion: Int = 1,
                headers: [(name: String, value: String)] = [], body: [UInt8] = [], receivedAt: UInt64 = 0) {
        self.method = method
        self.path = path
        self.query = query
        self.minorVersion = minorVersion
        self.headers = headers
        self.body = body
        self.receivedAt = receivedAt
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }
}
