import HTTPTransport
/// Completion of one route: the answer, and the serving arm it was scored on (nil: none), which
/// the router records in `prerank_requests_total` before handing the answer to the transport.
typealias RouteDone = @Sendable (HTTPResponse, String?) -> Void

/// One route's handler. The router has checked the path and the method; the handler answers
/// exactly once through `done`, on whatever thread its work ends.
protocol RouteHandler: Sendable {
    func handle(_ request: HTTPRequest, done: @escaping RouteDone)
}
