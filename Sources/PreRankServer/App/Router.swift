import Dispatch
import HTTPTransport
import StrictJSON

/// Maps a request to its route's handler: 404 for an unknown path, 405 (with `Allow`) for a
/// method the route does not take, and `prerank_requests_total` plus the latency histogram for
/// every answer, whichever handler gave it.
struct Router: Sendable {
    /// The methods of each route (HEAD is allowed wherever GET is). docs/openapi.yaml lists
    /// exactly these paths (Tests/reference/test_openapi.py reads this table).
    static let routes: [String: [String]] = [
        "/prerank": ["POST"], "/healthz": ["GET"], "/readyz": ["GET"], "/metrics": ["GET"],
        "/v1/model": ["GET"], "/admin/reload": ["POST"], "/admin/items": ["POST"],
    ]

    private let handlers: [String: any RouteHandler]
    private let metrics: MetricsRegistry

    init(context: AppContext, reloader: Reloader, gauges: ServingGauges) {
        let auth = AdminAuth(context: context)
        handlers = [
            "/prerank": PrerankRoute(context: context, admission: Admission(pool: context.pool, metrics: context.metrics),
                                     warnings: UnknownFieldWarnings(logger: context.logger)),
            "/healthz": HealthRoute(),
            "/readyz": ReadinessRoute(context: context),
            "/metrics": MetricsRoute(context: context),
            "/v1/model": ModelRoute(context: context),
            "/admin/reload": AdminReloadRoute(context: context, auth: auth, reloader: reloader),
            "/admin/items": AdminItemsRoute(context: context, auth: auth, gauges: gauges),
        ]
        assert(Set(handlers.keys) == Set(Self.routes.keys), "every route has a handler")
        metrics = context.metrics
    }

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let route = Self.routes[request.path] != nil ? request.path : "other"
        // Captures the receive time, not the request: a queued job must not keep the body alive.
        let receivedAt = request.receivedAt
        let done: RouteDone = { [metrics] response, arm in
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - receivedAt) / 1e9
            metrics.recordRequest(route: route, code: response.status, seconds: seconds, arm: arm ?? "")
            respond(response)
        }
        guard let methods = Self.routes[request.path], let handler = handlers[request.path] else {
            done(.error(APIError(status: 404, code: "not_found", message: "no route \(request.path)")), nil)
            return
        }
        guard methods.contains(request.method) || (request.method == "HEAD" && methods.contains("GET")) else {
            done(.error(APIError(status: 405, code: "method_not_allowed", message: "\(request.path) takes \(methods.joined(separator: ", "))",
                                 headers: [("Allow", methods.joined(separator: ", "))])), nil)
            return
        }
        handler.handle(request, done: done)
    }
}
