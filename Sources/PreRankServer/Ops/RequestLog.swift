import Foundation
import TwinTower

/// The request log: sampled `POST /prerank` requests and answers as JSON lines, for joining with
/// later feedback into training data (`prerank join-logs`, docs/REQUEST_LOG.md).
///
/// `submit` never blocks a request thread: it appends to a bounded in-memory queue (a full queue
/// drops the line and counts it in `prerank_request_log_dropped_total`). One background thread
/// appends queued lines to `requests-<UTC time>-<seq>.jsonl`, starts a new file before one would
/// exceed `maxFileBytes`, and hands finished files to a serial compression queue, which writes
/// `.jsonl.gz` (temporary name, fsync, rename), deletes the plain file and keeps at most `maxFiles`
/// finished files. A line accepted by `submit` is written exactly once: rotation, `flush` and
/// `close` never lose or repeat one (only a failing disk does; such lines are counted as dropped).
public final class RequestLog: Sendable {
    public let config: RequestLogConfig
    private let metrics: MetricsRegistry
    private let shared: RequestLogShared
    private let files: RequestLogFiles

    /// Creates the directory, compresses plain files left by an earlier process, and starts the
    /// writer thread.
    public init(config: RequestLogConfig, metrics: MetricsRegistry) {
        self.config = config
        self.metrics = metrics
        self.shared = RequestLogShared(capacity: max(1, config.queueCapacity))
        self.files = RequestLogFiles(config: config, metrics: metrics)
        files.recoverLeftovers()
        let shared = self.shared
        let files = self.files
        let thread = Thread { RequestLog.writerLoop(shared: shared, files: files) }
        thread.name = "prerank.request-log"
        thread.start()
    }

    deinit { close() }

    /// Whether to log this request: `sampleRate` of them. With a request id the choice is a hash of
    /// the id (the same id is always in or always out, so client retries and other systems that
    /// sample by the same rule agree); without one it is random.
    public func shouldSample(requestID: String?) -> Bool {
        RequestLog.sample(requestID: requestID, rate: config.sampleRate)
    }

    /// The sampling rule on its own: hash of `requestID` (FNV-1a 64 + a 64-bit finaliser) mapped
    /// to [0, 1) and compared with `rate`.
    public static func sample(requestID: String?, rate: Double) -> Bool {
        if rate >= 1 { return true }
        if !(rate > 0) { return false }
        guard let id = requestID else { return Double.random(in: 0..<1) < rate }
        // Finalised: FNV's high bits barely move between "r-1" and "r-2".
        return StableFraction.of(id) < rate
    }

    /// Queues one line (a newline is added when missing). Never blocks; returns false, and counts
    /// the line as dropped, when the queue is full or the log is closed.
    @discardableResult
    public func submit(_ line: [UInt8]) -> Bool {
        let accepted = shared.offer(line)
        if !accepted { metrics.recordRequestLog(dropped: 1) }
        return accepted
    }

    /// Blocks until every line accepted so far is written to its file and fsynced (used before a
    /// reload, so the lines of the old model are on disk before the new one answers).
    public func flush() {
        shared.flush()
    }

    /// Flushes, finishes and compresses the current file and stops the writer (SIGTERM).
    /// Later submits are dropped. Safe to call more than once.
    public func close() {
        shared.close()
        files.waitForCompression()
    }

    /// Lines accepted and not yet written (for tests and `/metrics` gauges).
    public var pending: Int { shared.pendingCount }

    // MARK: writer thread

    private static func writerLoop(shared: RequestLogShared, files: RequestLogFiles) {
        while true {
            // Wakes for lines, a flush, a close, or the current file's age limit.
            let work = shared.take(until: files.rotationDue)
            files.finishIfOld()
            if !work.lines.isEmpty { files.append(work.lines) }
            if work.sync { files.sync() }
            if work.closing { files.finishCurrent() }
            shared.completed(count: work.lines.count, synced: work.sync, closing: work.closing)
            if work.closing { return }
        }
    }
}
