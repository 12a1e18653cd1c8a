import HTTPTransport
/// `GET /healthz`: the process answers. Needs nothing loaded, so a liveness probe never
/// restarts a server that is still loading its model.
struct HealthRoute: RouteHandler {
    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        done(.json(200, Array("{\"status\":\"ok\"}".utf8)), nil)
    }
}
