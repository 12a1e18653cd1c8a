import Foundation
import Logging
import StrictJSON
import Synchronization

/// One log line per event on stderr, as text or as a JSON object (config `logging.format`).
///
/// JSON lines carry `ts`, `level`, `label`, `msg` and the metadata as top-level keys, which is
/// what log shippers (Vector, Fluent Bit, Loki) index without a parser.
public struct LineLogHandler: LogHandler {
    public enum Format: String, Sendable { case text, json }

    /// The server's level and format, shared by every handler it bootstraps, so a reload that
    /// changes `logging.*` applies to every logger at once (swift-log copies a handler into
    /// each `Logger`, so a plain stored level could not be changed after start).
    public final class Live: Sendable {
        private let state: Mutex<(Logger.Level, Format)>
        public init(level: Logger.Level, format: Format) { state = Mutex((level, format)) }
        /// The settings `prerank serve` bootstraps logging with and reloads change.
        public static let server = Live(level: .info, format: .text)
        public var level: Logger.Level { state.withLock { $0.0 } }
        public var format: Format { state.withLock { $0.1 } }
        public func set(level: Logger.Level, format: Format) { state.withLock { $0 = (level, format) } }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level {
        get { live?.level ?? fixedLevel }
        set { if let live { live.set(level: newValue, format: live.format) } else { fixedLevel = newValue } }
    }
    public let label: String
    public var format: Format { live?.format ?? fixedFormat }
    private var fixedLevel: Logger.Level
    private let fixedFormat: Format
    private let live: Live?
    private let sink: LogSink

    public init(label: String, level: Logger.Level, format: Format, sink: LogSink = .standardError) {
        self.label = label
        self.fixedLevel = level
        self.fixedFormat = format
        self.live = nil
        self.sink = sink
    }

    /// A handler that follows `live` (the server's; reloads change it).
    public init(label: String, live: Live, sink: LogSink = .standardError) {
        self.label = label
        self.fixedLevel = live.level
        self.fixedFormat = live.format
        self.live = live
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let ts = Self.timestamp()
        var line: String
        switch format {
        case .text:
            line = "\(ts) \(event.level) \(label): \(event.message)"
            for (k, v) in merged.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(v)" }
        case .json:
            line = "{\"ts\":\"\(ts)\",\"level\":\"\(event.level)\",\"label\":" + JSONText.quote(label)
                + ",\"msg\":" + JSONText.quote("\(event.message)")
            for (k, v) in merged.sorted(by: { $0.key < $1.key }) {
                line += "," + JSONText.quote(k) + ":" + Self.json(v)
            }
            line += "}"
        }
        // Notice and above (start, stop, reload) are written at once; the rest (per-request
        // lines) go through the bounded asynchronous writer.
        sink.write(line + "\n", urgent: event.level >= .notice)
    }

    static func json(_ v: Logger.MetadataValue) -> String {
        switch v {
        case .string(let s): return JSONText.quote(s)
        case .stringConvertible(let c):
            if let n = c as? any BinaryInteger { return "\(n)" }
            if let d = c as? Double, d.isFinite { return "\(d)" }
            if let b = c as? Bool { return b ? "true" : "false" }
            return JSONText.quote(c.description)
        case .array(let a): return "[" + a.map(json).joined(separator: ",") + "]"
        case .dictionary(let d):
            return "{" + d.sorted(by: { $0.key < $1.key }).map { JSONText.quote($0.key) + ":" + json($0.value) }.joined(separator: ",") + "}"
        }
    }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, Int(tv.tv_usec / 1000))
    }
}

/// Where log lines go. `standardError` queues ordinary lines in `AsyncLogWriter.standardError`
/// (bounded, dropped and counted when full) and writes urgent ones at once, after what is
/// queued; a whole line is written with one `write(2)` so lines never interleave.
public struct LogSink: Sendable {
    private let emit: @Sendable (String, Bool) -> Void
    public init(write: @escaping @Sendable (String) -> Void) { self.emit = { line, _ in write(line) } }
    init(emit: @escaping @Sendable (_ line: String, _ urgent: Bool) -> Void) { self.emit = emit }
    public static let standardError = LogSink(emit: { line, urgent in
        if urgent { AsyncLogWriter.standardError.writeNow(line) } else { AsyncLogWriter.standardError.submit(line) }
    })
    func write(_ line: String, urgent: Bool = true) { emit(line, urgent) }
}
