/// The application behind the HTTP layer. `respond` may be called from any thread, once; the
/// connection writes responses in request order.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void)
    /// The transport answered `status` itself (a framing refusal, a timeout, a full budget):
    /// the application counts it with its own answers.
    func transportRefused(status: Int)
    /// The body of a refusal the transport answers itself (`TransportRefusal`: status, code,
    /// message, headers). Why the application renders it: the error body is API (the server's
    /// is the SPEC's JSON), and the transport knows no API.
    func renderRefusal(_ refusal: TransportRefusal) -> HTTPResponse
}

extension HTTPHandler {
    public func transportRefused(status: Int) {}
}
