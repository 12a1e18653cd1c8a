/// What `ConnectionStateMachine` needs of the buffered-bytes budget. Injected, so that the
/// machine stays free of shared state in tests (they pass a fake that records every call).
protocol BufferBudget: AnyObject {
    /// Takes `bytes` for a body from the budget if that many are left.
    func reserve(_ bytes: Int) -> Bool
    /// Takes `bytes` for input not yet framed (a head, pipelined requests), which may also use
    /// the headroom that bodies leave.
    func reserveInput(_ bytes: Int) -> Bool
    func release(_ bytes: Int)
}
