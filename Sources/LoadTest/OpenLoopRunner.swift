#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Histogram

/// One constant-rate step of a load test.
public struct LoadStep: Sendable {
    /// Requests per second (offered).
    public var rate: Double
    /// Seconds of scheduled sends (after the warm-up).
    public var duration: Double
    /// Seconds of sends at the same rate before recording starts.
    public var warmup: Double = 0
    /// Keep-alive connections opened at the start.
    public var connections: Int = 8
    /// More connections are opened, up to this many, when a request finds none free.
    public var maxConnections: Int = 64
    /// Per-request send/receive timeout, milliseconds.
    public var timeoutMs: Int = 10_000

    public init(rate: Double, duration: Double) {
        self.rate = rate
        self.duration = duration
    }
}

/// What one step measured. Latency runs from each request's *scheduled* send time to the last
/// byte of its response, so waiting for a free connection or a slow server counts (no
/// coordinated omission).
public struct LoadStepResult: Codable, Sendable {
    public var offeredRate: Double
    public var achievedRate: Double
    public var scheduled: Int
    public var completed: Int
    /// 2xx responses.
    public var ok: Int
    /// Non-2xx statuses by code, and transport failures (`timeout`, `io`, `connect`, `closed`,
    /// `malformed`, `unsent`: still unsent when the step's time ran out).
    public var errors: [String: Int]
    /// Latency percentiles of the 2xx answers only: a fast 503 is not an answer, and mixed in
    /// it would make an overloaded server look faster.
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var p999Ms: Double
    public var maxMs: Double
    public var meanMs: Double
    /// Non-2xx responses (shed, refused, failed) and their own latency; nil p50/p99 when none.
    public var refused: Int
    public var refusedP50Ms: Double?
    public var refusedP99Ms: Double?
    public var connections: Int
    public var seconds: Double

    public var errorCount: Int { errors.values.reduce(0, +) }
    public var errorRate: Double { scheduled == 0 ? 0 : Double(errorCount) / Double(scheduled) }
}

/// Open-loop, constant-rate load over a pool of keep-alive connections.
///
/// Request `i` is scheduled at `start + i / rate`. Each worker owns one connection; it takes the
/// next request index, sleeps until that request's scheduled time (if still ahead), sends it and
/// reads the response. When every worker is busy the next request simply waits, and its latency
/// includes the wait; a worker that finds its request more than 1 ms late opens another
/// connection (a new worker), up to `maxConnections`. Every loop is bounded: sends stop at the
/// end of the step, stragglers at `duration + timeout`.
public final class OpenLoopRunner: @unchecked Sendable {
    // Shared state, guarded by `lock`.
    private let lock = NSLock()
    private var next = 0
    private var workers = 0
    private var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    private var refusedHistogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    private var errors: [String: Int] = [:]
    private var completed = 0
    private var ok = 0
    private let group = DispatchGroup()

    private let target: LoadTarget
    private let heads: [[UInt8]]
    private let bodies: [[UInt8]]
    private let step: LoadStep
    private var startNs: UInt64 = 0
    private var total = 0
    private var warmupCount = 0
    private var hardStopNs: UInt64 = 0

    public init(target: LoadTarget, source: RequestSource, step: LoadStep) {
        self.target = target
        self.step = step
        self.bodies = source.bodies
        self.heads = source.bodies.map { body in
            Array("POST \(target.path) HTTP/1.1\r\nHost: \(target.hostHeader)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        }
    }

    /// Runs the step and returns its figures.
    public func run() -> LoadStepResult {
        precondition(step.rate > 0 && step.duration > 0)
        warmupCount = Int(step.rate * step.warmup)
        total = warmupCount + max(1, Int(step.rate * step.duration))
        let initial = max(1, min(step.connections, step.maxConnections))
        startNs = Self.now() + 50_000_000  // leave time to open the connections
        hardStopNs = startNs + UInt64((step.warmup + step.duration) * 1e9) + UInt64(step.timeoutMs) * 1_000_000
        lock.lock()
        for _ in 0..<initial { spawnWorker() }
        lock.unlock()
        group.wait()
        let seconds = Double(Self.now() - startNs) / 1e9
        lock.lock()
        defer { lock.unlock() }
        let recorded = histogram.totalCount
        func ms(_ us: UInt64) -> Double { Double(us) / 1000 }
        // Throughput over the recorded window: the step's duration, or longer when responses
        // straggled past it.
        let measuredSeconds = max(step.duration, seconds - step.warmup)
        return LoadStepResult(
            offeredRate: step.rate,
            achievedRate: Double(ok) / max(measuredSeconds, 1e-9),
            scheduled: total - warmupCount,
            completed: completed,
            ok: ok,
            errors: errors,
            p50Ms: recorded > 0 ? ms(histogram.valueAtPercentile(50)) : 0,
            p90Ms: recorded > 0 ? ms(histogram.valueAtPercentile(90)) : 0,
            p99Ms: recorded > 0 ? ms(histogram.valueAtPercentile(99)) : 0,
            p999Ms: recorded > 0 ? ms(histogram.valueAtPercentile(99.9)) : 0,
            maxMs: recorded > 0 ? ms(histogram.max) : 0,
            meanMs: recorded > 0 ? histogram.mean / 1000 : 0,
            refused: Int(refusedHistogram.totalCount),
            refusedP50Ms: refusedHistogram.totalCount > 0 ? ms(refusedHistogram.valueAtPercentile(50)) : nil,
            refusedP99Ms: refusedHistogram.totalCount > 0 ? ms(refusedHistogram.valueAtPercentile(99)) : nil,
            connections: workers,
            seconds: seconds)
    }

    private func spawnWorker() {
        workers += 1  // callers hold `lock`
        group.enter()
        let thread = Thread { [self] in
            work()
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func scheduled(_ i: Int) -> UInt64 { startNs + UInt64(Double(i) / step.rate * 1e9) }

    private func work() {
        let connection = HTTPConnection(target: target, timeoutMs: step.timeoutMs)
        var local = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var localRefused = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var localErrors: [String: Int] = [:]
        var localCompleted = 0, localOK = 0
        try? connection.open()
        while true {
            lock.lock()
            let i = next
            if i >= total { lock.unlock(); break }
            let due = scheduled(i)
            let now = Self.now()
            if now >= hardStopNs {
                // Out of time: everything not yet sent is counted, not sent.
                let unsent = total - max(i, warmupCount)
                if unsent > 0 { localErrors["unsent", default: 0] += unsent }
                next = total
                lock.unlock()
                break
            }
            next += 1
            if now > due + 1_000_000 && workers < step.maxConnections { spawnWorker() }
            lock.unlock()

            Self.sleep(until: due)
            let b = i % bodies.count
            let record = i >= warmupCount
            do {
                let response = try connection.exchange(head: heads[b], body: bodies[b])
                let latencyUs = max(1, (Self.now() - due) / 1000)
                if record {
                    localCompleted += 1
                    if (200..<300).contains(response.status) {
                        _ = local.record(latencyUs)
                        localOK += 1
                    } else {
                        _ = localRefused.record(latencyUs)
                        localErrors[String(response.status), default: 0] += 1
                    }
                }
                if response.closes { connection.close() }
            } catch {
                if record { localErrors[error.label, default: 0] += 1 }
                connection.close()
                if case .connect = error { Self.sleep(until: Self.now() + 10_000_000) }  // no busy reconnect loop
            }
        }
        connection.close()
        lock.lock()
        histogram.add(local)
        refusedHistogram.add(localRefused)
        for (k, v) in localErrors { errors[k, default: 0] += v }
        completed += localCompleted
        ok += localOK
        lock.unlock()
    }

    /// CLOCK_MONOTONIC, nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Sleeps until the monotonic time `ns` (returns at once if it has passed).
    static func sleep(until ns: UInt64) {
        guard ns > now() else { return }
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
    }
}
