import Foundation

/// A fixed set of worker threads fed from a bounded queue: scoring runs here, off the I/O
/// queues, at most `workers` requests at a time (one per core; OpenBLAS is pinned to one thread).
///
/// `submit` never blocks: when `queueDepth` jobs already wait it returns false and the caller
/// answers 503 with `Retry-After` (load shedding), so a burst cannot grow latency without bound.
public final class WorkerPool: @unchecked Sendable {
    // All mutable state is guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var running = 0
    private var stopped = false
    public let workers: Int
    public let queueDepth: Int

    public init(workers: Int, queueDepth: Int, name: String = "prerank-worker") {
        self.workers = max(1, workers)
        self.queueDepth = max(0, queueDepth)
        for i in 0..<self.workers {
            let thread = Thread { [weak self] in self?.loop() }
            thread.name = "\(name)-\(i)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Queues `job`; false when the queue is full (or the pool is stopped).
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let waiting = jobs.count - head
        guard !stopped, waiting < queueDepth + max(0, workers - running) else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Jobs waiting plus jobs running.
    public var load: (queued: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (jobs.count - head, running)
    }

    /// Lets queued jobs finish, then ends the threads.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count && !stopped { condition.wait() }
            if head == jobs.count && stopped {
                condition.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            running += 1
            condition.unlock()
            job()
            condition.lock()
            running -= 1
            condition.unlock()
        }
    }
}
