import HTTPTransport
import Logging

/// The prerank HTTP application: the one entry the transport (`HTTPServer`) calls. It knows
/// nothing of sockets, and the transport knows nothing of routes: requests go to the `Router`,
/// whose route handlers share an `AppContext`; reloads go to the `Reloader`.
public final class PreRankApp: HTTPHandler, Sendable {
    private let context: AppContext
    private let router: Router
    private let reloader: Reloader
    public var metrics: MetricsRegistry { context.metrics }

    /// HTTP-layer counters, read at scrape time. Set before the server starts.
    public var transportStats: (@Sendable () -> HTTPServerStats)? {
        get { context.transportStats }
        set { context.transportStats = newValue }
    }

    /// The serving TLS context (nil for plain HTTP): a reload re-reads `server.tls.cert`/`key`
    /// into it, so a renewed certificate needs no restart. Set before the server starts.
    public var tlsContext: TLSContext? {
        get { context.tlsContext }
        set { context.tlsContext = newValue }
    }

    /// - parameters:
    ///   - configPath: re-read on every reload (nil: keep `initial`'s config).
    ///   - overrides: applied to every config read (command-line `--model`, `--index`).
    ///   - cache: the cache `initial` was loaded (and committed) with, so the first reload shares
    ///     its files; a fresh one makes the first reload load everything again.
    ///   - catalog: the live catalog `initial` was attached to (`LiveCatalog.attach`); nil: a
    ///     fresh one, which opens the update log at the first reload.
    public init(initial: ServingSnapshot, configPath: String?, overrides: @escaping @Sendable (PreRankConfig) -> PreRankConfig,
                metrics: MetricsRegistry = MetricsRegistry(), logger: Logger, workers: Int, cache: ServingCache? = nil,
                catalog: LiveCatalog? = nil) {
        let context = AppContext(initial: initial, metrics: metrics, logger: logger, workers: workers,
                                 catalog: catalog ?? LiveCatalog(logger: logger))
        let gauges = ServingGauges(metrics: metrics, catalog: context.catalog)
        self.context = context
        self.reloader = Reloader(context: context, gauges: gauges, configPath: configPath, overrides: overrides,
                                 cache: cache ?? ServingCache(metrics: metrics), parallelism: workers, started: initial.config)
        self.router = Router(context: context, reloader: reloader, gauges: gauges)
        gauges.publish(initial)
    }

    /// The snapshot in force.
    public var current: ServingSnapshot? { context.current }

    public func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        router.handle(request, respond: respond)
    }

    public func transportRefused(status: Int) {
        context.metrics.recordTransportRefusal(code: status)
    }

    /// Reloads config, model and index off the serving path (`Reloader`); on any error the old
    /// snapshot keeps serving.
    public func reload(trigger: String, completion: @escaping @Sendable (Result<ReloadOutcome, ReloadError>) -> Void = { _ in }) {
        reloader.reload(trigger: trigger, completion: completion)
    }

    /// Flushes and closes the request log (SIGTERM), stops the workers after queued work.
    public func shutdown() {
        context.requestLog.close()
        context.pool.stop()
    }
}
