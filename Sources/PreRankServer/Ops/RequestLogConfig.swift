import Foundation


/// Settings of the request log (config `request_log`; docs/REQUEST_LOG.md). Ranges are checked
/// once, where the config is read (`ConfigLoader`), so that every refusal names a real config key.
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
}
