import Foundation

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
