import Foundation

/// A fixed set of worker threads fed from a bounded queue: scoring runs here, off the I/O
/// queues, on at most `workers` slots at a time (one per core; OpenBLAS is pinned to one thread).
///
/// Admission is by cost (issue #11): a job says how many slots it occupies while it runs. A
/// normal request takes one; one that the engine splits across `parallelism` threads (a
/// whole-index scan, or candidates above `ScoringOptions.parallelThreshold`) takes that many, so
/// it is not counted as one core while it uses all of them. Jobs start in order: a wide job at
/// the head waits for enough free slots and later narrow jobs do not overtake it (no starvation).
///
/// `submit` never blocks: when the queued cost would exceed `queueDepth` plus the free slots it
/// returns false and the caller answers 503 with `Retry-After` (load shedding), so a burst cannot
/// grow latency without bound.
public final class WorkerPool: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void

    // All mutable state is guarded by `condition`.
    private let condition = NSCondition()
    private var queue = JobRing<(cost: Int, job: Job)>()
    /// Sum of the costs of queued jobs.
    private var queuedCost = 0
    /// Slots held by running jobs.
    private var busySlots = 0
    private var running = 0
    private var stopped = false
    public let workers: Int
    public let queueDepth: Int

    /// - parameters:
    ///   - workers: threads, and slots (a job never takes more than all of them).
    ///   - queueDepth: slots' worth of jobs that may wait beyond the free slots.
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

    /// Queues `job` taking `cost` slots (clamped to 1...workers); false when it does not fit in
    /// the queue (or the pool is stopped).
    public func submit(cost: Int = 1, _ job: @escaping Job) -> Bool {
        let cost = min(max(1, cost), workers)
        condition.lock()
        defer { condition.unlock() }
        guard !stopped, queuedCost + cost <= queueDepth + (workers - busySlots) else { return false }
        queue.append((cost, job))
        queuedCost += cost
        condition.broadcast()
        return true
    }

    /// Jobs waiting, jobs running, and the slots the running ones hold.
    public var load: (queued: Int, running: Int, busySlots: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (queue.count, running, busySlots)
    }

    /// Lets queued jobs finish, then ends the threads.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while let (cost, job) = next() {
            job()
            finished(cost: cost)
        }
    }

    /// Waits for the head job to fit in the free slots and takes it off the queue; nil when the
    /// pool is stopped and drained. The job leaves the queue here, so once the caller's `job`
    /// local is gone (the end of a `loop` iteration) nothing holds its captures.
    private func next() -> (Int, Job)? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let head = queue.first, head.cost <= workers - busySlots {
                _ = queue.popFirst()
                queuedCost -= head.cost
                busySlots += head.cost
                running += 1
                return head
            }
            if queue.isEmpty && stopped { return nil }
            condition.wait()
        }
    }

    private func finished(cost: Int) {
        condition.lock()
        busySlots -= cost
        running -= 1
        // A wide job at the head may now fit; every waiting thread re-checks.
        condition.broadcast()
        condition.unlock()
    }
}
