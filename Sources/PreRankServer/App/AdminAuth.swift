import Foundation
import HTTPTransport
import StrictJSON

/// The admin endpoints' bearer-token check (`server.admin_token_file`). The token is read from
/// the snapshot in force, so a reload that changes the file changes the token.
struct AdminAuth: Sendable {
    let context: AppContext

    /// nil when the request carries the bearer token; 403 with `disabled` as its code when no
    /// token is configured, 401 otherwise.
    func refusal(_ request: HTTPRequest, disabled: String) -> APIError? {
        guard let token = context.current?.adminToken else {
            return APIError(status: 403, code: disabled, message: "no server.admin_token_file configured")
        }
        let auth = request.header("authorization") ?? ""
        guard auth.hasPrefix("Bearer "), Self.constantTimeEquals(String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces), token) else {
            return APIError(status: 401, code: "unauthorized", message: "a valid bearer token is required",
                            headers: [("WWW-Authenticate", "Bearer")])
        }
        return nil
    }

    /// Compares every byte whatever the first difference, so the time taken does not tell a
    /// client how much of a guessed token was right.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}
