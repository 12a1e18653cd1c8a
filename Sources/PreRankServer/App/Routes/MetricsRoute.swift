import HTTPTransport
/// `GET /metrics`: the Prometheus exposition. Transport counters and the worker queue are pulled
/// at scrape time rather than pushed per request, so the request path pays nothing for them.
struct MetricsRoute: RouteHandler {
    let context: AppContext

    func handle(_ request: HTTPRequest, done: @escaping RouteDone) {
        let metrics = context.metrics
        if let stats = context.transportStats?() {
            metrics.setTransport(stats)
        }
        let load = context.pool.load
        metrics.setGauge("prerank_worker_queue_depth", help: "Requests waiting for a worker.", value: Double(load.queued))
        done(HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                          body: Array(metrics.render().utf8)), nil)
    }
}
