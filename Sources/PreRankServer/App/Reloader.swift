import Foundation
import HTTPTransport
import Logging
import Synchronization

/// Reloads config, model and index off the serving path and puts them in force atomically, with
/// the request log and TLS certificate that go with the new config; on any error the old snapshot
/// keeps serving.
///
/// Reloads run one at a time on the reload queue. A trigger that arrives while another reload is
/// queued (not yet started) joins it: that reload starts after both triggers, so it reads what
/// both asked for, and both completions get its result. Files that did not change are shared
/// with the snapshot in force (`ServingCache`), so a config-only reload maps nothing.
final class Reloader: Sendable {
    typealias Completion = @Sendable (Result<ReloadOutcome, ReloadError>) -> Void

    private let context: AppContext
    private let gauges: ServingGauges
    private let configPath: String?
    private let overrides: @Sendable (PreRankConfig) -> PreRankConfig
    /// The model and index files behind the snapshot in force, shared by reloads that leave them unchanged.
    private let cache: ServingCache
    private let parallelism: Int
    /// The config the listener and worker pool were started with: restart-only keys are compared
    /// with it, so every reload reports them until the restart that applies them.
    private let started: PreRankConfig
    /// Completions of triggers waiting for the reload queued next (nil: none queued); a trigger
    /// arriving while one is queued joins it, so a SIGHUP storm runs at most one reload behind
    /// the one in progress.
    private let queuedReload = Mutex<[Completion]?>(nil)

    init(context: AppContext, gauges: ServingGauges, configPath: String?,
         overrides: @escaping @Sendable (PreRankConfig) -> PreRankConfig, cache: ServingCache, parallelism: Int,
         started: PreRankConfig) {
        self.context = context
        self.gauges = gauges
        self.configPath = configPath
        self.overrides = overrides
        self.cache = cache
        self.parallelism = parallelism
        self.started = started
    }

    func reload(trigger: String, completion: @escaping Completion) {
        let joined = queuedReload.withLock { queued -> Bool in
            if queued != nil {
                queued!.append(completion)
                return true
            }
            queued = [completion]
            return false
        }
        let metrics = context.metrics, logger = context.logger
        if joined {
            metrics.recordReloadCoalesced()
            return
        }
        context.reloadQueue.async { [self] in
            // From here on, new triggers queue the next reload: this one may have read the files already.
            let completions = queuedReload.withLock { queued in
                defer { queued = nil }
                return queued ?? []
            }
            let startedAt = Date()
            let before = cache.loadCounts
            var result = loadNext(trigger: trigger)
            let after = cache.loadCounts
            switch result {
            case .success(var outcome):
                outcome.modelsRead = after.modelLoads - before.modelLoads
                outcome.indexesMapped = after.indexLoads - before.indexLoads
                result = .success(outcome)
                metrics.recordReload(result: "ok")
                logger.notice("reload ok", metadata: [
                    "trigger": "\(trigger)", "model_version": "\(outcome.snapshot.primary.version)",
                    "seconds": "\(String(format: "%.3f", Date().timeIntervalSince(startedAt)))",
                    "models_read": "\(outcome.modelsRead)", "indexes_mapped": "\(outcome.indexesMapped)",
                    "applied": "\(outcome.applied.joined(separator: ","))",
                    "restart_required": "\(outcome.needsRestart.joined(separator: ","))",
                    "coalesced": "\(completions.count - 1)",
                ])
            case .failure(let error):
                metrics.recordReload(result: "rejected")
                logger.error("reload rejected; the old model keeps serving", metadata: ["trigger": "\(trigger)", "key": "\(error.key)",
                                                                                        "reason": "\(error.message)"])
            }
            for completion in completions { completion(result) }
        }
    }

    /// Runs on the reload queue.
    private func loadNext(trigger: String) -> Result<ReloadOutcome, ReloadError> {
        let current = context.current
        var config = current?.config ?? PreRankConfig()
        if let configPath {
            do { config = try ConfigLoader.load(path: configPath, requireModel: false) } catch {
                // A file-level error (empty, not YAML, unreadable) has no key: name the file.
                return .failure(ReloadError(key: error.key.isEmpty ? configPath : error.key, message: error.message))
            }
        }
        config = overrides(config)
        // The same rule as at start: the file (or the start's --model/--index) names the model.
        do { try config.requireModelPaths() } catch { return .failure(ReloadError(key: error.key, message: error.message)) }
        let plan = config.reloadPlan(previous: current?.config ?? started, started: started)
        // A new certificate/key pair is loaded and checked before anything is swapped: a bad pair
        // rejects the reload and the pair in force keeps serving.
        let tlsContext = context.tlsContext
        var nextTLS: TLSContext?
        if let tls = tlsContext, let files = config.server.tls {
            do { nextTLS = try TLSContext(certificate: files.cert, privateKey: files.key, profile: tls.profile) } catch {
                return .failure(ReloadError(key: error.key, message: error.message))
            }
        }
        let next: ServingSnapshot
        do {
            // The update log replayed on top of the (new) bases: a reload never drops a change.
            next = try context.catalog.attach(try ServingSnapshot.load(config: config, parallelism: parallelism, cache: cache),
                                              previous: current)
        } catch {
            cache.discard()
            return .failure(error)
        }
        context.requestLog.flush()
        context.install(next)
        cache.commit()
        LineLogHandler.Live.server.set(level: config.logging.level, format: config.logging.format)
        if let nextTLS, let tls = tlsContext {
            tls.replace(with: nextTLS)
            context.logger.notice("reload: TLS certificate in force", metadata: ["sha256": "\(tls.certificateFingerprint)"])
        }
        context.requestLog.swap(to: config.requestLog)
        gauges.publish(next)
        // Only once the reload is in force: a refused one changes nothing, not even the pending list.
        context.metrics.setRestartPending(plan.needsRestart)
        if !plan.needsRestart.isEmpty {
            context.logger.warning("reload: these keys differ from the running server and apply only at the next restart; the rest is applied", metadata: [
                "trigger": "\(trigger)", "keys": "\(plan.needsRestart.joined(separator: ","))"])
        }
        return .success(ReloadOutcome(snapshot: next, applied: plan.applied, needsRestart: plan.needsRestart))
    }
}
