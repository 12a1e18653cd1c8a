import Foundation
import Synchronization
import Testing
@testable import PreRankServer
import TwinTower

/// The worker pool's admission by cost (issue #11) and its release of finished jobs (issue #10),
/// driven directly: no sockets, jobs that block on semaphores so the tests control the timing.
@Suite struct WorkerPoolTests {
    /// Polls `condition` for up to two seconds.
    static func eventually(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline {
            if condition() { return true }
            usleep(1000)
        }
        return condition()
    }

    final class Token: Sendable {}

    @Test func finishedJobReleasesItsCapturesAtOnce() {
        let pool = WorkerPool(workers: 2, queueDepth: 4)
        defer { pool.stop() }
        weak var weakToken: Token?
        let ran = DispatchSemaphore(value: 0)
        do {
            let token = Token()
            weakToken = token
            let accepted = pool.submit { [token] in
                _ = token
                ran.signal()
            }
            #expect(accepted)
        }
        ran.wait()
        // The old pool kept the closure (and its request body and snapshot) in its array until
        // about 1,024 later jobs had run.
        #expect(Self.eventually { weakToken == nil })
    }

    @Test func wideJobWaitsForAllSlotsAndNarrowJobsDoNotOvertakeIt() {
        let pool = WorkerPool(workers: 2, queueDepth: 4)
        defer { pool.stop() }
        let order = Mutex<[String]>([])
        let busy = Mutex((now: 0, peak: 0))
        func job(_ name: String, cost: Int, hold: DispatchSemaphore? = nil) -> WorkerPool.Job {
            { busy.withLock { $0.now += cost; $0.peak = max($0.peak, $0.now) }
              order.withLock { $0.append(name) }
              hold?.wait()
              busy.withLock { $0.now -= cost } }
        }
        let releaseNarrow = DispatchSemaphore(value: 0)
        #expect(pool.submit(cost: 1, job("narrow-1", cost: 1, hold: releaseNarrow)))
        #expect(Self.eventually { pool.load.busySlots == 1 })
        #expect(pool.submit(cost: 2, job("wide", cost: 2)))
        #expect(pool.submit(cost: 1, job("narrow-2", cost: 1)))
        // One slot is free, but the wide job at the head needs two; narrow-2 must not jump it.
        usleep(100_000)
        #expect(order.withLock { $0 } == ["narrow-1"])
        #expect(pool.load.queued == 2)
        releaseNarrow.signal()
        #expect(Self.eventually { order.withLock { $0.count } == 3 })
        #expect(order.withLock { $0 } == ["narrow-1", "wide", "narrow-2"])
        #expect(busy.withLock { $0.peak } <= 2, "never more slots in use than workers")
    }

    @Test func admissionCountsSlotsNotJobs() {
        // No waiting room: only what fits in the free slots is admitted.
        let pool = WorkerPool(workers: 2, queueDepth: 0)
        defer { pool.stop() }
        let hold = DispatchSemaphore(value: 0)
        #expect(pool.submit(cost: 1) { hold.wait() })
        #expect(Self.eventually { pool.load.busySlots == 1 })
        #expect(!pool.submit(cost: 2) {}, "a 2-slot job does not fit in 1 free slot")
        #expect(pool.submit(cost: 1) { hold.wait() })
        #expect(!pool.submit(cost: 1) {}, "both slots taken, no queue")
        hold.signal()
        hold.signal()
        #expect(Self.eventually { pool.load.busySlots == 0 })
        #expect(pool.submit(cost: 2) {}, "an idle pool admits a job using every slot")
    }

    @Test func queueDepthIsCountedInSlots() {
        let pool = WorkerPool(workers: 2, queueDepth: 3)
        defer { pool.stop() }
        let hold = DispatchSemaphore(value: 0)
        #expect(pool.submit(cost: 2) { hold.wait() })
        #expect(Self.eventually { pool.load.busySlots == 2 })
        #expect(pool.submit(cost: 2) {})
        #expect(!pool.submit(cost: 2) {}, "2 + 2 queued slots exceed a depth of 3")
        #expect(pool.submit(cost: 1) {})
        #expect(!pool.submit(cost: 1) {})
        hold.signal()
        #expect(Self.eventually { pool.load == (0, 0, 0) })
    }

    @Test func costIsClampedToTheWorkers() {
        let pool = WorkerPool(workers: 2, queueDepth: 0)
        defer { pool.stop() }
        let ran = DispatchSemaphore(value: 0)
        #expect(pool.submit(cost: 64) { ran.signal() }, "a cost above the worker count takes all of them, it is not refused forever")
        #expect(ran.wait(timeout: .now() + 2) == .success)
        #expect(Self.eventually { pool.load.busySlots == 0 })
        #expect(pool.submit(cost: 0) {}, "a cost below 1 counts as 1")
    }

    @Test func stopRunsQueuedJobsThenEnds() {
        let pool = WorkerPool(workers: 1, queueDepth: 8)
        let count = Mutex(0)
        for _ in 0..<5 { #expect(pool.submit { count.withLock { $0 += 1 } }) }
        pool.stop()
        #expect(!pool.submit {})
        #expect(Self.eventually { count.withLock { $0 } == 5 })
    }

    @Test func ringKeepsOrderAcrossGrowthAndClearsPoppedSlots() {
        var ring = JobRing<Int>(capacity: 2)
        var expected: [Int] = []
        var got: [Int] = []
        for i in 0..<50 {
            ring.append(i)
            expected.append(i)
            if i % 3 == 0, let x = ring.popFirst() { got.append(x) }
        }
        while let x = ring.popFirst() { got.append(x) }
        #expect(got == expected)
        #expect(ring.isEmpty && ring.first == nil)

        weak var weakToken: Token?
        var tokens = JobRing<Token>()
        do {
            let t = Token()
            weakToken = t
            tokens.append(t)
        }
        _ = tokens.popFirst()
        #expect(weakToken == nil, "a popped element is not kept by the ring")
    }

    @Test func costFollowsTheEnginesSplitRule() {
        let options = ScoringOptions(parallelThreshold: 50_000, parallelism: 4)
        let whole = PreRankRequest()
        #expect(ScoringCost.slots(for: whole, indexCount: 1_000_000, options: options) == 4)
        #expect(ScoringCost.slots(for: whole, indexCount: 3_000, options: options) == 1, "a small index is scanned on one thread")
        #expect(ScoringCost.slots(for: PreRankRequest(candidates: Array(0..<50_000)), indexCount: 1_000_000, options: options) == 4)
        #expect(ScoringCost.slots(for: PreRankRequest(candidates: Array(0..<49_999)), indexCount: 1_000_000, options: options) == 1)
        let single = ScoringOptions(parallelThreshold: 10, parallelism: 1)
        #expect(ScoringCost.slots(for: whole, indexCount: 1_000_000, options: single) == 1)
    }
}
