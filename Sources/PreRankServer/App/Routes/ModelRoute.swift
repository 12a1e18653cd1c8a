import HTTPTransport
import StrictJSON
/// `GET /v1/model`: what this server serves (`ModelDocument`), for operators and for checking
/// that a rollout reached every replica.
struct ModelRoute: RouteHandler {
    let context: AppContext

    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        guard let snap = context.current else {
            done(.error(APIError(status: 503, code: "not_ready", message: "no model loaded")), nil)
            return
        }
        done(.json(200, Array(ModelDocument(snap).json.utf8)), nil)
    }
}
