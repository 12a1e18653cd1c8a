import Synchronization

/// The request log in force (nil: `request_log` not configured). A reload swaps it only when its
/// settings change, so an unchanged log keeps its open file and queue across reloads.
final class RequestLogSlot: Sendable {
    private let log: Mutex<RequestLog?>
    private let metrics: MetricsRegistry

    init(_ settings: PreRankConfig.RequestLog?, metrics: MetricsRegistry) {
        self.metrics = metrics
        self.log = Mutex(settings.map { Self.make($0, metrics: metrics) })
    }

    static func make(_ c: PreRankConfig.RequestLog, metrics: MetricsRegistry) -> RequestLog {
        var config = RequestLogConfig(dir: c.dir, sampleRate: c.sampleRate, maxFileBytes: c.maxFileBytes, maxFiles: c.maxFiles)
        config.maxFileAgeSeconds = Double(c.maxFileAgeSeconds)
        return RequestLog(config: config, metrics: metrics)
    }

    var current: RequestLog? { log.withLock { $0 } }

    /// Replaces the log when `wanted` differs from the one in force; the old one is closed (its
    /// queued lines written) outside the lock.
    func swap(to wanted: PreRankConfig.RequestLog?) {
        let old = log.withLock { box -> RequestLog? in
            let current = box
            let same: Bool
            if let current, let wanted {
                same = current.config.dir == wanted.dir && current.config.sampleRate == wanted.sampleRate
                    && current.config.maxFileBytes == wanted.maxFileBytes && current.config.maxFiles == wanted.maxFiles
                    && current.config.maxFileAgeSeconds == Double(wanted.maxFileAgeSeconds)
            } else {
                same = current == nil && wanted == nil
            }
            if same { return nil }
            box = wanted.map { Self.make($0, metrics: metrics) }
            return current
        }
        old?.close()
    }

    func flush() { current?.flush() }
    func close() { current?.close() }
}
