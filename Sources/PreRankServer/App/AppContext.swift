import Dispatch
import HTTPTransport
import Logging
import StrictJSON
import Synchronization

/// What the routes, the reloader and admission share: the snapshot in force, the request log,
/// metrics, the worker pool and the live catalog. One object rather than a parameter list per
/// route, so a route's initializer says which collaborators it uses and nothing is copied.
///
/// Mutable state is behind mutexes (`snapshot`, `requestLog`); `transportStats` and
/// `tlsContext` are set once, before the server starts, hence `@unchecked Sendable`.
final class AppContext: @unchecked Sendable {
    private let snapshot: Mutex<ServingSnapshot?>
    let requestLog: RequestLogSlot
    let metrics: MetricsRegistry
    let pool: WorkerPool
    let logger: Logger
    /// The update log and the deltas over the served indexes (`POST /admin/items`); used only on
    /// `reloadQueue`, so changes and reloads are serialised.
    let catalog: LiveCatalog
    /// Reloads and catalog changes run here, one at a time, off the serving path.
    let reloadQueue = DispatchQueue(label: "prerank.reload", qos: .utility)
    /// HTTP-layer counters, read at scrape time.
    var transportStats: (@Sendable () -> HTTPServerStats)?
    /// The serving TLS context (nil for plain HTTP): a reload re-reads `server.tls.cert`/`key`
    /// into it, so a renewed certificate needs no restart.
    var tlsContext: TLSContext?

    init(initial: ServingSnapshot, metrics: MetricsRegistry, logger: Logger, workers: Int, catalog: LiveCatalog) {
        self.snapshot = Mutex(initial)
        self.metrics = metrics
        self.logger = logger
        self.catalog = catalog
        self.pool = WorkerPool(workers: workers, queueDepth: initial.config.server.queueDepth)
        self.requestLog = RequestLogSlot(initial.config.requestLog, metrics: metrics)
    }

    /// The snapshot in force (nil: none loaded yet).
    var current: ServingSnapshot? { snapshot.withLock { $0 } }

    /// Puts `next` in force. The replaced snapshot is released here or by the last request still
    /// using it; either way its model and index are freed on `ReleaseQueue`, off the request path.
    func install(_ next: ServingSnapshot) { snapshot.withLock { $0 = next } }

    /// The answer of a route that needs a snapshot before the first one is loaded.
    static let notReady = APIError(status: 503, code: "not_ready", message: "no model loaded", headers: [("Retry-After", "1")])
}
