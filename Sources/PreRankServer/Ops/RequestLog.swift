import Foundation
import TwinTower

/// Settings of the request log (config `request_log`; docs/REQUEST_LOG.md).
public struct RequestLogConfig: Sendable, Equatable {
    /// Directory the `requests-*.jsonl[.gz]` files go to; created when missing.
    public var dir: String
    /// Share of requests logged, 0...1. Deterministic per `request_id` when one is given.
    public var sampleRate: Double
    /// A file is finished (and compressed) before a line would take it past this size.
    public var maxFileBytes: Int
    /// Finished (`.jsonl.gz`) files kept; the oldest are deleted beyond this.
    public var maxFiles: Int
    /// Lines waiting for the writer; a submit beyond this is dropped and counted.
    public var queueCapacity: Int
    /// A file is also finished once it is this old (seconds), even on a quiet server, so that
    /// `join-logs` sees recent traffic within that time; nil: by size only.
    public var maxFileAgeSeconds: Double? = nil

    public init(dir: String, sampleRate: Double = 0.01, maxFileBytes: Int = 64 << 20, maxFiles: Int = 100,
                queueCapacity: Int = 8192) {
        self.dir = dir
        self.sampleRate = sampleRate
        self.maxFileBytes = maxFileBytes
        self.maxFiles = maxFiles
        self.queueCapacity = queueCapacity
    }

    /// Out-of-range values, each with its config key (`request_log.sample_rate`, …), for the
    /// config loader's error messages. Empty when the settings are usable.
    public func problems() -> [(key: String, message: String)] {
        var out: [(key: String, message: String)] = []
        if dir.isEmpty { out.append(("request_log.dir", "must be a directory path")) }
        if !(sampleRate >= 0 && sampleRate <= 1) { out.append(("request_log.sample_rate", "must be between 0 and 1")) }
        if maxFileBytes < 4096 { out.append(("request_log.max_file_bytes", "must be at least 4096")) }
        if maxFiles < 1 { out.append(("request_log.max_files", "must be at least 1")) }
        if queueCapacity < 1 { out.append(("request_log.queue_capacity", "must be at least 1")) }
        if let age = maxFileAgeSeconds, !(age >= 1) { out.append(("request_log.max_file_age_s", "must be at least 1")) }
        return out
    }
}

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

/// Queue state shared by submitters, flushers and the writer thread; every field is guarded by
/// `cond`.
final class RequestLogShared: @unchecked Sendable {
    struct Work {
        var lines: [[UInt8]]
        var sync: Bool
        var closing: Bool
    }

    private let cond = NSCondition()
    private let capacity: Int
    private var queue: [[UInt8]] = []
    /// Lines accepted since start / lines the writer has finished with.
    private var accepted: UInt64 = 0
    private var completed: UInt64 = 0
    /// `completed` as of the last fsync the writer ran for a flush.
    private var synced: UInt64 = 0
    private var syncRequested = false
    private var closing = false
    private var closed = false

    init(capacity: Int) {
        self.capacity = capacity
        queue.reserveCapacity(min(capacity, 4096))
    }

    var pendingCount: Int {
        cond.lock()
        defer { cond.unlock() }
        return Int(accepted - completed)
    }

    func offer(_ line: [UInt8]) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if closing || queue.count >= capacity { return false }
        var line = line
        if line.last != UInt8(ascii: "\n") { line.append(UInt8(ascii: "\n")) }
        queue.append(line)
        accepted += 1
        if queue.count == 1 { cond.broadcast() }
        return true
    }

    /// Writer side: waits for lines, a flush or close (or until `deadline`, when given), and
    /// takes them all at once; the work is empty when the deadline passed first.
    func take(until deadline: Date? = nil) -> Work {
        cond.lock()
        defer { cond.unlock() }
        while queue.isEmpty && !syncRequested && !closing {
            if let deadline {
                if !cond.wait(until: deadline) { break }
            } else {
                cond.wait()
            }
        }
        var lines: [[UInt8]] = []
        swap(&lines, &queue)
        let work = Work(lines: lines, sync: syncRequested || closing, closing: closing)
        syncRequested = false
        return work
    }

    func completed(count: Int, synced didSync: Bool, closing didClose: Bool) {
        cond.lock()
        completed += UInt64(count)
        if didSync { synced = completed }
        if didClose { closed = true }
        cond.broadcast()
        cond.unlock()
    }

    func flush() {
        cond.lock()
        defer { cond.unlock() }
        let target = accepted
        if closed || synced >= target { return }
        syncRequested = true
        cond.broadcast()
        while synced < target && !closed { cond.wait() }
    }

    func close() {
        cond.lock()
        defer { cond.unlock() }
        closing = true
        cond.broadcast()
        while !closed { cond.wait() }
    }
}
