import HTTPTransport
import StrictJSON

extension HTTPResponse {
    /// The SPEC's JSON error body for `error`, with its extra headers. In the server, not the
    /// transport: the error body is API.
    public static func error(_ error: APIError) -> HTTPResponse {
        json(error.status, Array(error.jsonBody.utf8), headers: error.headers)
    }
}
