import TwinTower

/// How many worker slots a request occupies while it is scored (issue #11).
///
/// The engine splits a scan across `options.parallelism` threads when it covers at least
/// `options.parallelThreshold` rows (the whole index when `candidates` is omitted, else the
/// known candidates); such a request uses that many cores, so admission counts it as that many
/// slots. Computed before scoring from the decoded request, so it counts all listed candidates
/// (unknown ids included): it can only over-count, never admit more work than there are cores.
public enum ScoringCost {
    public static func slots(for request: PreRankRequest, indexCount: Int, options: ScoringOptions) -> Int {
        let rows = request.candidates?.count ?? indexCount
        return rows >= options.parallelThreshold ? max(1, options.parallelism) : 1
    }
}
