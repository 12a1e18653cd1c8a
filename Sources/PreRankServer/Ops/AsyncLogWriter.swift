import Dispatch
import Foundation
import Synchronization

/// A bounded, asynchronous writer of log lines to a file descriptor (stderr).
///
/// Why: access-log lines were written with a blocking `write(2)` on the thread that answered the
/// request; a slow log consumer (a full pipe to a log shipper) then stalled scoring workers.
/// Lines are queued and written in batches on a serial queue of their own. When `capacity`
/// lines are waiting, new ones are dropped and counted (`prerank_log_lines_dropped_total`)
/// rather than blocking a request. `writeNow` (notice and above: start, stop, reload) first
/// writes what is queued, then its line, synchronously — so those lines are in order and
/// survive an `exit` right after them.
public final class AsyncLogWriter: Sendable {
    public static let standardError = AsyncLogWriter(fd: 2, capacity: 8192)
    /// Lines dropped because the queue was full, over all writers.
    static let droppedLines = Atomic<UInt64>(0)
    public static var dropped: UInt64 { droppedLines.load(ordering: .relaxed) }

    private struct Pending {
        var lines: [String] = []
        var scheduled = false
    }

    private let fd: Int32
    private let capacity: Int
    private let pending = Mutex(Pending())
    private let queue = DispatchQueue(label: "prerank.log-writer", qos: .utility)

    public init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = capacity
    }

    /// Queues `line` (ending in a newline); drops it if `capacity` lines are waiting.
    public func submit(_ line: String) {
        let decision: Bool? = pending.withLock { p in
            guard p.lines.count < capacity else { return nil }
            p.lines.append(line)
            if p.scheduled { return false }
            p.scheduled = true
            return true
        }
        switch decision {
        case nil: Self.droppedLines.add(1, ordering: .relaxed)
        case true?: queue.async { self.drain() }
        case false?: break
        }
    }

    /// Writes what is queued, then `line`, before returning.
    public func writeNow(_ line: String) {
        queue.sync {
            drain()
            write([line])
        }
    }

    /// Waits until every queued line is written.
    public func flush() {
        queue.sync { drain() }
    }

    private func drain() {
        while true {
            let batch: [String] = pending.withLock { p in
                let b = p.lines
                p.lines = []
                if b.isEmpty { p.scheduled = false }
                return b
            }
            if batch.isEmpty { return }
            write(batch)
        }
    }

    private func write(_ lines: [String]) {
        var bytes = Array(lines.joined().utf8)
        var offset = 0
        bytes.withUnsafeMutableBytes { raw in
            while offset < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }
}
