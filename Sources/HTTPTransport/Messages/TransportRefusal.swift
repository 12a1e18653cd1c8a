/// A request the transport answers itself (a framing error, a limit, a timeout, a full budget,
/// an encoding it cannot undo): a status, a machine-readable code, a sentence, extra headers.
///
/// Why a value and not a response: the transport decides *that* a request is refused and *why*;
/// what the body looks like is the application's API, so the application renders it
/// (`HTTPHandler.renderRefusal`: the server writes the SPEC's JSON error body). The transport
/// thus speaks no JSON, and the codes and sentences a client may see from the transport are
/// chosen here, in one place.
public struct TransportRefusal: Sendable, Equatable {
    public var status: Int
    /// A stable, machine-readable reason (`server_busy`, `body_too_large`, …).
    public var code: String
    public var message: String
    /// Extra response headers, e.g. `Retry-After` when the server is busy.
    public var headers: [(name: String, value: String)]

    public init(status: Int, code: String, message: String, headers: [(name: String, value: String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func == (a: TransportRefusal, b: TransportRefusal) -> Bool {
        a.status == b.status && a.code == b.code && a.message == b.message
            && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    // MARK: the transport's refusals

    /// The buffered-bytes budget cannot hold the request (`MemoryBudget`): retry in a second.
    static let serverBusy = TransportRefusal(status: 503, code: "server_busy", message: "request buffers are full; retry shortly",
                                             headers: [("Retry-After", "1")])

    /// `maxConnections` reached and no idle connection could be closed to make room.
    static let tooManyConnections = TransportRefusal(status: 503, code: "too_many_connections", message: "connection limit reached",
                                                     headers: [("Retry-After", "1")])

    /// A `Content-Encoding` other than identity or gzip.
    static func unsupportedEncoding(_ encoding: String) -> TransportRefusal {
        TransportRefusal(status: 415, code: "unsupported_encoding", message: "Content-Encoding \(encoding) is not supported (gzip is)")
    }

    /// A gzip body that could not be inflated: too large (413), over the budget (503), corrupt (400).
    static func gzip(_ failure: Gzip.Failure, limit: Int) -> TransportRefusal {
        switch failure {
        case .tooLarge: return TransportRefusal(status: 413, code: "body_too_large", message: "gzip body inflates past \(limit) bytes")
        case .overBudget: return .serverBusy
        case .corrupt: return TransportRefusal(status: 400, code: "bad_encoding", message: "gzip body is corrupt")
        }
    }

    /// The state machine's refusal (a status and a reason) in words.
    init(_ refusal: ConnectionStateMachine.Refusal) {
        switch refusal.reason {
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
            self.init(status: f.status, code: code, message: f.message)
        case .timedOut(let kind):
            let what = kind == .head ? "head" : "body"
            self.init(status: 408, code: "request_timeout", message: "request \(what) not received in time")
        case .bodyTooLarge(let length, let limit):
            self.init(status: 413, code: "body_too_large", message: "body of \(length) bytes is larger than the limit of \(limit)")
        case .budgetSpent:
            self = .serverBusy
        }
    }
}
