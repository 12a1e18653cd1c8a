/// What a connection reports to its server: counters and admission bookkeeping.
struct ConnectionObserver: Sendable {
    var timedOut: @Sendable (ConnectionStateMachine.TimeoutKind) -> Void = { _ in }
    /// The transport answered `status` itself (framing refusal, limit, timeout, budget).
    var refused: @Sendable (Int) -> Void = { _ in }
    var closed: @Sendable (Connection) -> Void = { _ in }
}
