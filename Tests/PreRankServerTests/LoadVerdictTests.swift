import Testing
@testable import LoadTest

/// The load tester's verdict holds (issue #27): a sweep rate passes only when every repetition
/// does, the knee comes with its spread, and a run that got no answer or too many errors fails.
@Suite struct LoadVerdictTests {
    static func step(_ rate: Double, p99: Double, ok: Int = 100, errors: [String: Int] = [:], refused: Int = 0) -> LoadStepResult {
        LoadStepResult(offeredRate: rate, achievedRate: Double(ok) / 1.0 * rate / 100, scheduled: ok + errors.values.reduce(0, +),
                       completed: ok + refused, ok: ok, errors: errors, p50Ms: p99 / 2, p90Ms: p99 * 0.8, p99Ms: p99, p999Ms: p99,
                       maxMs: p99, meanMs: p99 / 2, refused: refused, refusedP50Ms: nil, refusedP99Ms: nil, connections: 8, seconds: 1)
    }

    /// A server whose p99 at `rate` is given per repetition, cycling.
    final class Flaky {
        var calls: [Double: Int] = [:]
        let p99: (Double, Int) -> Double
        init(_ p99: @escaping (Double, Int) -> Double) { self.p99 = p99 }
        func step(_ rate: Double) -> LoadStepResult {
            let n = calls[rate, default: 0]
            calls[rate] = n + 1
            return LoadVerdictTests.step(rate, p99: p99(rate, n))
        }
    }

    @Test func aRateThatFailsOneRepetitionIsNotTheKnee() {
        // 100 and 200 hold; 400 passes twice and fails on the third run (the lucky-run knee).
        let server = Flaky { rate, n in rate >= 400 && n == 2 ? 30 : (rate >= 800 ? 50 : 10 + rate / 100) }
        var plan = SweepPlan(startRate: 100)
        plan.factor = 2
        plan.p99BudgetMs = 15
        plan.repeats = 3
        plan.confirmFraction = 0
        let out = RateSweep.run(plan: plan, makeStep: server.step) { _, _, _ in }
        #expect(out.knee == 200 && out.failedRate == 400)
        #expect(server.calls == [100: 3, 200: 3, 400: 3])
        #expect(out.kneeRuns.count == 3 && out.steps.count == 9)
        var report = LoadTestReport(url: "u", bodies: 1, p99BudgetMs: 15, steps: [])
        RateSweep.fill(&report, from: out, repeats: 3)
        #expect(report.kneeRate == 200 && report.kneeUpperRate == 400 && report.kneeP99MinMs == 12 && report.kneeP99MaxMs == 12)
        // With one repetition the same server reports the lucky knee: what --repeats prevents.
        plan.repeats = 1
        let once = RateSweep.run(plan: plan, makeStep: Flaky { rate, n in rate >= 400 && n == 2 ? 30 : (rate >= 800 ? 50 : 10 + rate / 100) }.step) { _, _, _ in }
        #expect(once.knee == 400)
    }

    @Test func nothingConnectedFails() {
        let dead = Self.step(100, p99: 0, ok: 0, errors: ["connect": 100])
        let report = LoadTestReport(url: "http://127.0.0.1:9/prerank", bodies: 1, p99BudgetMs: nil, steps: [dead])
        let why = LoadVerdict.failure(report, sweep: false, maxErrorRate: 1)
        #expect(why?.hasPrefix("no request got an answer from http://127.0.0.1:9/prerank (connect)") == true, "\(why ?? "nil")")
        #expect(LoadVerdict.failure(report, sweep: true, maxErrorRate: 1) != nil)
    }

    @Test func errorRateAboveTheThresholdFails() {
        let some = Self.step(100, p99: 5, ok: 98, errors: ["503": 2], refused: 2)
        let report = LoadTestReport(url: "u", bodies: 1, p99BudgetMs: nil, steps: [some])
        #expect(LoadVerdict.failure(report, sweep: false, maxErrorRate: 0.01)?.contains("error rate 2.00 %") == true)
        #expect(LoadVerdict.failure(report, sweep: false, maxErrorRate: 0.05) == nil)
        let clean = LoadTestReport(url: "u", bodies: 1, p99BudgetMs: nil, steps: [Self.step(100, p99: 5)])
        #expect(LoadVerdict.failure(clean, sweep: false, maxErrorRate: 0.01) == nil)
        // A sweep with no passing rate has no verdict to give.
        var sweep = LoadTestReport(url: "u", bodies: 1, p99BudgetMs: 15, steps: [Self.step(100, p99: 50)])
        #expect(LoadVerdict.failure(sweep, sweep: true, maxErrorRate: 0.01)?.hasPrefix("no rate passed") == true)
        sweep.kneeRate = 100
        #expect(LoadVerdict.failure(sweep, sweep: true, maxErrorRate: 0.01) == nil)
    }
}
