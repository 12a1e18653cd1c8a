import TwinTower

/// An error answered to a client: HTTP status plus the SPEC's JSON body
/// `{"error": {"code": "...", "message": "...", "field": "candidates[3]"}}`.
public struct APIError: Error, Sendable, Equatable {
    public var status: Int
    public var code: String
    public var message: String
    /// The offending request field as a path (`candidates[3]`, `user.age`), when there is one.
    public var field: String?
    /// Extra response headers, e.g. `Retry-After` when shedding load.
    public var headers: [(String, String)]

    public init(status: Int, code: String, message: String, field: String? = nil, headers: [(String, String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
    }

    public static func == (a: APIError, b: APIError) -> Bool {
        a.status == b.status && a.code == b.code && a.message == b.message && a.field == b.field
            && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    /// 400 for a field of the wrong type, out of range, or otherwise invalid.
    public static func badField(_ field: String, _ message: String) -> APIError {
        APIError(status: 400, code: "bad_field", message: message, field: field)
    }

    /// 400 for a body that is not well-formed JSON.
    public static func badJSON(_ message: String, field: String? = nil) -> APIError {
        APIError(status: 400, code: "bad_json", message: message, field: field)
    }

    /// The JSON body for this error.
    public var jsonBody: String {
        var s = "{\"error\":{\"code\":" + JSONText.quote(code) + ",\"message\":" + JSONText.quote(message)
        if let field { s += ",\"field\":" + JSONText.quote(field) }
        return s + "}}"
    }
}

/// Minimal JSON text helpers shared by the encoders.
public enum JSONText {
    /// A JSON string literal for `s`, escaping quotes, backslashes and control characters.
    public static func quote(_ s: String) -> String { JSONString.quote(s) }
}
