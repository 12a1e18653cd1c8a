import Logging
import Synchronization

/// Warnings for request fields the model does not know (`request.unknown_features: warn`): each
/// name is logged once, and at most `maxNames` names are kept, because a client sending random
/// keys must not grow memory or the log without bound.
final class UnknownFieldWarnings: Sendable {
    static let maxNames = 256
    private let seen = Mutex<Set<String>>([])
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// A warning the first time each unknown field name is seen, and one when the set is full.
    func warnOnce(ignored: [String], modelVersion: String) {
        let (fresh, full) = seen.withLock { seen -> ([String], Bool) in
            var fresh: [String] = []
            var full = false
            for path in ignored where !seen.contains(path) {
                guard seen.count < Self.maxNames else { full = true; break }
                seen.insert(path)
                fresh.append(path)
            }
            // Over the cap: one more line saying so (a sentinel no field name can be), then silence.
            let firstTimeFull = full && seen.insert("\u{0}full").inserted
            return (fresh, firstTimeFull)
        }
        for path in fresh {
            logger.warning("request field is not a feature of the model and is ignored (logged once per name; request.unknown_features)",
                           metadata: ["field": "\(path)", "model_version": "\(modelVersion)"])
        }
        if full {
            logger.warning("more unknown request fields than \(Self.maxNames); no longer logged by name (prerank_request_features_total{feature=\"other\"} counts them)")
        }
    }
}
