import Fusion

/// One returned item.
public struct RankedItem: Sendable, Equatable {
    public var id: Int64
    public var score: Double
    /// Per-task probabilities in task order; `first` is CTR, `last` is CTCVR.
    public var probabilities: [Float]
}

/// Time spent in each stage of a request, in nanoseconds (exported as metrics).
public struct StageTimes: Sendable, Equatable {
    public var userTower: UInt64 = 0
    /// Candidate ids to index rows, duplicates and unknown ids.
    public var resolve: UInt64 = 0
    public var score: UInt64 = 0
    /// Exact F32 rescoring of the best candidates of a quantised scan (0 without rescore rows).
    public var rescore: UInt64 = 0
    public var topK: UInt64 = 0
    /// The sum of the stages (what `ScoringEngine.score` spends outside them is its overhead).
    public var total: UInt64 { userTower + resolve + score + rescore + topK }
    public init() {}
}

/// The outcome of scoring one request, before JSON encoding.
public struct ScoringResult: Sendable, Equatable {
    public var items: [RankedItem]
    public var unknownIDs: [Int64]
    /// True when the budget ran out while scoring: `items` are the best of what was scored.
    public var partial: Bool
    public var scoredCount: Int
    public var candidateCount: Int
    /// Candidates rescored from F32 rows (0 when the index has none).
    public var rescored: Int
    public var fusion: FusionPolicy
    public var stages: StageTimes
}
