import HTTPTransport
import StrictJSON

extension APIError {
    /// A refusal of the transport (framing, limits, timeouts, a full budget, an encoding) as the
    /// API's error: same status, code, message and headers, so the client reads the SPEC's JSON
    /// error body whichever layer refused.
    public init(_ refusal: TransportRefusal) {
        self.init(status: refusal.status, code: refusal.code, message: refusal.message,
                  headers: refusal.headers.map { ($0.name, $0.value) })
    }
}
