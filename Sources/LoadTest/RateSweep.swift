/// `--sweep`: raise the offered rate step by step until a step fails, and report the knee (the
/// highest rate that passed), then optionally confirm at a fraction of it (80 % by default).
///
/// A step passes when its p99 is within the budget, its error rate is at most `maxErrorRate`,
/// and the server kept up (2xx throughput at least 95 % of the offered rate).
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

public enum RateSweep {
    /// Runs steps with `makeStep(rate)` until one fails; `progress` sees each result.
    public static func run(plan: SweepPlan, makeStep: (Double) -> LoadStepResult,
                           progress: (LoadStepResult, Bool) -> Void) -> (steps: [LoadStepResult], knee: Double?, confirm: LoadStepResult?) {
        var steps: [LoadStepResult] = []
        var knee: Double? = nil
        var rate = plan.startRate
        for _ in 0..<plan.maxSteps where rate <= plan.maxRate {
            let r = makeStep(rate)
            let pass = plan.passes(r)
            steps.append(r)
            progress(r, pass)
            if !pass { break }
            knee = rate
            rate = plan.next(after: rate)
        }
        var confirm: LoadStepResult? = nil
        if let knee, plan.confirmFraction > 0 {
            let r = makeStep(knee * plan.confirmFraction)
            progress(r, plan.passes(r))
            confirm = r
        }
        return (steps, knee, confirm)
    }
}
