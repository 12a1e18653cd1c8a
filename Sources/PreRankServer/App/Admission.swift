import Dispatch
import StrictJSON

/// Admission control for `/prerank`: a request takes worker slots by its cost, waits in a bounded
/// queue, is shed with 503 when the queue is full, and is answered 504 without scoring when its
/// time budget ran out while it waited (scoring it could only produce a late answer).
struct Admission: Sendable {
    let pool: WorkerPool
    let metrics: MetricsRegistry

    /// Runs `work` on a worker once `cost` slots are free, or answers through `done` (503 when
    /// the queue is full, 504 when the budget expired in the queue).
    ///
    /// - parameters:
    ///   - receivedAt: monotonic nanoseconds when the request was received.
    ///   - arm: the serving arm, for the request metrics of a refusal.
    func submit(cost: Int, receivedAt: UInt64, budgetMs: Double, arm: String, done: @escaping RouteDone,
                work: @escaping @Sendable () -> Void) {
        metrics.adjustInflight(1)
        let accepted = pool.submit(cost: cost) { [metrics] in
            defer { metrics.adjustInflight(-1) }
            let waited = Double(DispatchTime.now().uptimeNanoseconds - receivedAt) / 1e6
            if waited >= budgetMs {
                metrics.recordBudgetExpired()
                done(.error(APIError(status: 504, code: "budget_expired", message: "the \(budgetMs) ms budget expired in the queue before scoring began")), arm)
                return
            }
            work()
        }
        if !accepted {
            metrics.adjustInflight(-1)
            metrics.recordShed()
            done(.error(APIError(status: 503, code: "overloaded", message: "all workers are busy and the queue is full; retry",
                                 headers: [("Retry-After", "1")])), arm)
        }
    }
}
