import Dispatch
import Foundation
import HTTPTransport
import Logging
import TwinTower

/// Starts the whole server from a config: logging, the first snapshot (which must load),
/// OpenBLAS pinned to one thread, the HTTP server, SIGHUP reload and SIGTERM/SIGINT drain.
public enum ServerMain {
    /// Runs until SIGTERM/SIGINT, then drains and calls `exit(0)`. Throws only if start-up fails.
    public static func run(configPath: String?, modelDir: String?, index: String?, host: String?, port: Int?) throws -> Never {
        var config = PreRankConfig()
        if let configPath {
            // `--model`/`--index` may name the model instead of the file; `requireModelPaths` below.
            do { config = try ConfigLoader.load(path: configPath, requireModel: false) } catch {
                // A file-level error (empty, not YAML) has no key: name the file instead.
                throw RunError(description: error.key.isEmpty ? "\(configPath): \(error.description)" : error.description)
            }
        }
        let overrides: @Sendable (PreRankConfig) -> PreRankConfig = { c in
            var c = c
            if let modelDir { c.model.dir = modelDir }
            if let index { c.model.index = index }
            if let host { c.server.host = host }
            if let port { c.server.port = port }
            return c
        }
        config = overrides(config)
        do { try config.requireModelPaths() } catch { throw RunError(description: error.description) }
        // The command line bypasses the config checks: a port outside 0...65535 would trap in
        // `UInt16(_:)` at bind time instead of failing with one line.
        guard (0...65535).contains(config.server.port) else {
            throw RunError(description: "port \(config.server.port) must be 0...65535 (0 picks a free one)")
        }
        LineLogHandler.Live.server.set(level: config.logging.level, format: config.logging.format)
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, live: .server) }
        let logger = Logger(label: "prerank")

        BLASThreads.set(1)
        let workers = config.server.workers > 0 ? config.server.workers : ProcessInfo.processInfo.activeProcessorCount
        logger.info("loading model and index", metadata: ["model": "\(config.model.dir)", "index": "\(config.model.index)"])
        let metrics = MetricsRegistry()
        let cache = ServingCache(metrics: metrics)
        let snapshot: ServingSnapshot
        let catalog = LiveCatalog(logger: logger)
        do {
            // The update log (model.updates) replayed on top of the base index before serving.
            snapshot = try catalog.attach(try ServingSnapshot.load(config: config, parallelism: workers, cache: cache), previous: nil)
        } catch {
            throw RunError(description: error.description)
        }
        cache.commit()
        let app = PreRankApp(initial: snapshot, configPath: configPath, overrides: overrides, metrics: metrics, logger: logger,
                             workers: workers, cache: cache, catalog: catalog)

        let limits = TransportLimits(server: config.server)
        var tls: TLSContext?
        if let t = config.server.tls {
            do { tls = try TLSContext(certificate: t.cert, privateKey: t.key, profile: t.profile) } catch { throw RunError(description: error.description) }
        }
        app.tlsContext = tls
        let server = HTTPServer(host: config.server.host, port: config.server.port, limits: limits, tls: tls, handler: app)
        app.transportStats = { [weak server] in server?.stats ?? HTTPServerStats() }
        let bound: Int
        do { bound = try server.start() } catch { throw RunError(description: "\(error)") }
        logger.notice("serving", metadata: ["address": "\(tls == nil ? "http" : "https")://\(config.server.host):\(bound)",
                                            "model_version": "\(snapshot.primary.version)", "items": "\(snapshot.primary.itemCount)",
                                            "workers": "\(workers)"])

        let signals = DispatchQueue(label: "prerank.signals")
        for s in [SIGHUP, SIGTERM, SIGINT] { signal(s, SIG_IGN) }
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signals)
        hup.setEventHandler { app.reload(trigger: "SIGHUP") }
        hup.resume()
        let stop: @Sendable () -> Void = {
            logger.notice("stopping: draining connections")
            server.shutdown(drainTimeout: 10) {
                app.shutdown()
                logger.notice("stopped")
                exit(0)
            }
        }
        let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: signals)
        term.setEventHandler(handler: stop)
        term.resume()
        let int = DispatchSource.makeSignalSource(signal: SIGINT, queue: signals)
        int.setEventHandler(handler: stop)
        int.resume()
        withExtendedLifetime((hup, term, int, server, app)) { dispatchMain() }
    }

    public struct RunError: Error, CustomStringConvertible { public var description: String }
}
