import HTTPTransport
import StrictJSON
/// `GET /readyz`: 200 with the model version once a snapshot is in force, 503 before, so a
/// load balancer sends no traffic to a server that cannot score.
struct ReadinessRoute: RouteHandler {
    let context: AppContext

    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        guard let snap = context.current else {
            done(.json(503, Array("{\"status\":\"loading\"}".utf8)), nil)
            return
        }
        done(.json(200, Array("{\"status\":\"ready\",\"model_version\":\(JSONText.quote(snap.primary.version))}".utf8)), nil)
    }
}
