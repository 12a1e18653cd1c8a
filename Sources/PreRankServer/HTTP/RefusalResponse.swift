import StrictJSON

/// The transport's refusals as they go on the wire: the SPEC's JSON error body (`APIError`).
///
/// Why here and not in the state machine: the machine decides *that* a request is refused and
/// why (a status and a reason); what the body says is API, rendered by the shell, so the
/// machine stays a pure model of the connection and the API's vocabulary lives in one layer.
extension ConnectionStateMachine.Refusal {
    var apiError: APIError {
        switch reason {
        case .malformed(let f):
            let code: String
            switch f.status {
            case 413: code = "body_too_large"
            case 431: code = "header_too_large"
            case 501: code = "not_implemented"
            case 505: code = "http_version_not_supported"
            case 417: code = "expectation_failed"
            default: code = "bad_request"
            }
            return APIError(status: f.status, code: code, message: f.message)
        case .timedOut(let kind):
            let what = kind == .head ? "head" : "body"
            return APIError(status: 408, code: "request_timeout", message: "request \(what) not received in time")
        case .bodyTooLarge(let length, let limit):
            return APIError(status: 413, code: "body_too_large", message: "body of \(length) bytes is larger than the limit of \(limit)")
        case .budgetSpent:
            return APIError(status: 503, code: "server_busy", message: "request buffers are full; retry shortly", headers: [("Retry-After", "1")])
        }
    }

    var response: HTTPResponse { .error(apiError) }
}

extension ConnectionStateMachine.Outbound {
    /// The response to serialise: the application's, or the refusal rendered.
    var response: HTTPResponse {
        switch content {
        case .answer(let r): return r
        case .refusal(let r): return r.response
        }
    }
}
