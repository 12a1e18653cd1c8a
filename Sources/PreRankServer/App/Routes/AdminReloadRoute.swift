import HTTPTransport
import StrictJSON
/// `POST /admin/reload`: the HTTP trigger of a reload (SIGHUP is the other), answered with the
/// reload's outcome once it is in force or refused.
struct AdminReloadRoute: RouteHandler {
    let context: AppContext
    let auth: AdminAuth
    let reloader: Reloader

    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        if var error = auth.refusal(request, disabled: "reload_disabled") {
            context.metrics.recordReload(result: "unauthorized")
            if error.status == 403 { error.message += "; use SIGHUP" }
            done(.error(error), nil)
            return
        }
        reloader.reload(trigger: "http") { result in
            switch result {
            case .success(let outcome):
                done(.json(200, Array(outcome.json.utf8)), nil)
            case .failure(let error):
                done(.error(APIError(status: 422, code: "reload_rejected", message: error.message, field: error.key)), nil)
            }
        }
    }
}
