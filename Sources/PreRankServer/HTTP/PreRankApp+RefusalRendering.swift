import HTTPTransport
import StrictJSON

extension PreRankApp {
    /// The transport's refusals get the SPEC's JSON error body, like the application's own
    /// errors (`HTTPHandler.renderRefusal`).
    public func renderRefusal(_ refusal: TransportRefusal) -> HTTPResponse {
        .error(APIError(refusal))
    }
}
