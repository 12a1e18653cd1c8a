/// `--sweep`: raise the offered rate step by step until a step fails, and report the knee (the
/// highest rate that passed), then optionally confirm at a fraction of it (80 % by default).
///
/// A step passes when its p99 is within the budget, its error rate is at most `maxErrorRate`,
/// and the server kept up (2xx throughput at least 95 % of the offered rate). Each rate runs
/// `repeats` times and passes only when every repetition does: one lucky run on a busy machine
/// reported a knee of 1,221 req/s whose next sweep failed at 1,175 (issue #27). The knee is
/// stated with its spread: the rate above it that failed, and the p99s of its repetitions.
public struct SweepPlan: Sendable {
    public var startRate: Double
    /// Each step multiplies the rate by this factor (when `increment` is 0).
    public var factor: Double = 1.25
    /// Or adds this many requests per second per step.
    public var increment: Double = 0
    public var maxRate: Double = 1_000_000
    public var maxSteps: Int = 30
    public var p99BudgetMs: Double = 150
    public var maxErrorRate: Double = 0.01
    /// Confirm at this fraction of the knee (0 to skip).
    public var confirmFraction: Double = 0.8
    /// Runs of each rate; the rate passes only if all of them pass.
    public var repeats: Int = 1

    public init(startRate: Double) { self.startRate = startRate }

    public func passes(_ r: LoadStepResult) -> Bool {
        r.p99Ms <= p99BudgetMs && r.errorRate <= maxErrorRate && r.achievedRate >= 0.95 * r.offeredRate
    }

    /// The rate after `rate`.
    public func next(after rate: Double) -> Double {
        increment > 0 ? rate + increment : rate * max(factor, 1.01)
    }
}

/// The result of a load test: one step, or a sweep with its knee.
public struct LoadTestReport: Codable, Sendable {
    public var url: String
    public var bodies: Int
    public var p99BudgetMs: Double?
    public var steps: [LoadStepResult]
    /// Highest offered rate that passed (sweep only).
    public var kneeRate: Double?
    /// The confirmation run at a fraction of the knee (sweep only).
    public var confirm: LoadStepResult?
    /// Runs of each rate (sweep only).
    public var repeats: Int?
    /// The first rate above the knee, which failed in at least one repetition: the knee lies in
    /// [kneeRate, kneeUpperRate). nil when no rate failed (the sweep hit --max-rate).
    public var kneeUpperRate: Double?
    /// Lowest and highest p99 of the knee's repetitions.
    public var kneeP99MinMs: Double?
    public var kneeP99MaxMs: Double?

    public init(url: String, bodies: Int, p99BudgetMs: Double?, steps: [LoadStepResult],
                kneeRate: Double? = nil, confirm: LoadStepResult? = nil) {
        self.url = url
        self.bodies = bodies
        self.p99BudgetMs = p99BudgetMs
        self.steps = steps
        self.kneeRate = kneeRate
        self.confirm = confirm
    }
}

/// What a sweep found.
public struct SweepOutcome: Sendable {
    /// Every run, repetitions included, in the order they ran (the confirmation apart).
    public var steps: [LoadStepResult] = []
    /// The highest rate whose every repetition passed (nil: the first rate failed).
    public var knee: Double?
    /// The rate after the knee, which failed in at least one repetition (nil: none failed).
    public var failedRate: Double?
    /// The knee's repetitions.
    public var kneeRuns: [LoadStepResult] = []
    public var confirm: LoadStepResult?
}

public enum RateSweep {
    /// Runs each rate `plan.repeats` times with `makeStep(rate)` until a rate fails in any
    /// repetition; `progress` sees each result, whether it passed and its repetition (1-based).
    public static func run(plan: SweepPlan, makeStep: (Double) -> LoadStepResult,
                           progress: (LoadStepResult, Bool, Int) -> Void) -> SweepOutcome {
        var out = SweepOutcome()
        var rate = plan.startRate
        let repeats = max(1, plan.repeats)
        for _ in 0..<plan.maxSteps where rate <= plan.maxRate {
            var runs: [LoadStepResult] = []
            var allPass = true
            for repetition in 1...repeats {
                let r = makeStep(rate)
                let pass = plan.passes(r)
                runs.append(r)
                progress(r, pass, repetition)
                // A failed repetition settles the rate: the rest would not change the verdict.
                if !pass { allPass = false; break }
            }
            out.steps += runs
            if !allPass {
                out.failedRate = rate
                break
            }
            out.knee = rate
            out.kneeRuns = runs
            rate = plan.next(after: rate)
        }
        if let knee = out.knee, plan.confirmFraction > 0 {
            let r = makeStep(knee * plan.confirmFraction)
            progress(r, plan.passes(r), 1)
            out.confirm = r
        }
        return out
    }

    /// The report's knee fields from a sweep.
    public static func fill(_ report: inout LoadTestReport, from out: SweepOutcome, repeats: Int) {
        report.steps = out.steps
        report.kneeRate = out.knee
        report.confirm = out.confirm
        report.repeats = repeats
        report.kneeUpperRate = out.failedRate
        report.kneeP99MinMs = out.kneeRuns.map(\.p99Ms).min()
        report.kneeP99MaxMs = out.kneeRuns.map(\.p99Ms).max()
    }
}

/// The pass/fail verdict of a load test, for the exit status (issue #27: `loadtest` exited 0
/// even when every request failed to connect).
public enum LoadVerdict {
    /// Why this run failed, or nil. A fixed-rate run fails when nothing connected or its error
    /// rate is above `maxErrorRate`; a sweep fails when nothing connected or no rate passed.
    public static func failure(_ report: LoadTestReport, sweep: Bool, maxErrorRate: Double) -> String? {
        let runs = report.steps + (report.confirm.map { [$0] } ?? [])
        if !runs.isEmpty && runs.allSatisfy({ $0.ok == 0 && $0.refused == 0 }) {
            let reasons = runs.flatMap { $0.errors.keys }.sorted()
            return "no request got an answer from \(report.url) (\(Set(reasons).sorted().joined(separator: ", ")))"
        }
        if sweep {
            if report.kneeRate == nil {
                return "no rate passed: the first rate already failed (p99, error rate or throughput)"
            }
            return nil
        }
        for r in runs where r.errorRate > maxErrorRate {
            return String(format: "error rate %.2f %% at %.0f req/s is above --max-error-rate %.2f %%", r.errorRate * 100, r.offeredRate, maxErrorRate * 100)
        }
        return nil
    }
}
