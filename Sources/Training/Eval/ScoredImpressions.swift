import Foundation
import Fusion
import TwinTower

/// The model's outputs for every impression of a test file, kept columnar and grouped by
/// request: computed once by `Evaluator.score`, then fused and measured any number of times
/// (eval uses one fusion, tune-fusion a grid of them).
///
/// Rows are kept in input order (`row` below); `requestRows(r)` gives request r's rows in input
/// order, so rows of one request need not be contiguous in the file.
public struct ScoredImpressions: Sendable {
    public var taskNames: [String]
    /// The label column of each task (`click`, `cart`, `order`).
    public var labelColumns: [String]
    public var taskCount: Int { taskNames.count }
    /// Request ids in order of first appearance.
    public var requestIDs: [String]
    /// Per row: index into `requestIDs`.
    public var requestOfRow: [Int32]
    public var itemIDs: [Int64]
    /// `[rows × T]` probabilities, task order (`p_0` = CTR, `p_{T-1}` = CTCVR).
    public var probabilities: [Float]
    /// `[rows × T]` label values as read (0/1; any value > 0 is a positive; the last task's
    /// value is the order count `W` of WR@K).
    public var labels: [Float]
    /// Per row relevance level from the `relevance` column, when the file has one.
    public var relevance: [Float]?
    /// Rows of request r are `grouped[groupStart[r]..<groupStart[r+1]]` (row numbers, input order).
    public var grouped: [Int32]
    public var groupStart: [Int]
    /// Rows skipped because their item_id is not in the index.
    public var unknownItems: Int
    /// User-side fields with no column in the file (encoded as missing, like the server does).
    public var missingUserColumns: [String]
    /// Distinct user-tower evaluations (the per-request user vector cache's misses).
    public var userTowerRuns: Int

    public var rows: Int { itemIDs.count }
    public var requests: Int { requestIDs.count }
    public var hasRelevance: Bool { relevance != nil }

    public func requestRows(_ r: Int) -> ArraySlice<Int32> { grouped[groupStart[r]..<groupStart[r + 1]] }
    /// Candidates in the longest request's list: a K of WR@K / NDCG@K at or above it ranks every
    /// candidate of every list, so WR@K is 1 whatever the scores.
    public var longestList: Int { (0..<requests).reduce(0) { max($0, groupStart[$1 + 1] - groupStart[$1]) } }

    /// The fused score of one row under `fusion`: CTR = first task, CTCVR = last task,
    /// relevance 0 when the file has no relevance column.
    @inline(__always)
    public func fused(row i: Int, _ fusion: FusionPolicy) -> Double {
        let t = taskCount
        return fusion.score(ctr: probabilities[i * t], ctcvr: probabilities[i * t + t - 1], relevance: relevance?[i] ?? 0)
    }

    /// Writes `request_id,item_id,<task>…,score`: one row per scored impression in input order,
    /// one probability column per task (named by task), `score` = fused score. Numbers are
    /// written in shortest round-trip form (Float for probabilities, Double for the score), so
    /// reading the file back gives exactly the values eval measured.
    public func writePredictions(to path: String, fusion: FusionPolicy) throws(FormatError) {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw FormatError(path, "cannot create the predictions file")
        }
        defer { try? handle.close() }
        var out = (["request_id", "item_id"] + taskNames + ["score"]).map(csvField).joined(separator: ",") + "\n"
        let t = taskCount
        do {
            for i in 0..<rows {
                out += csvField(requestIDs[Int(requestOfRow[i])])
                out += ","
                out += String(itemIDs[i])
                for k in 0..<t {
                    out += ","
                    out += probabilities[i * t + k].description
                }
                out += ","
                out += fused(row: i, fusion).description
                out += "\n"
                if out.utf8.count >= 1 << 20 {
                    try handle.write(contentsOf: Data(out.utf8))
                    out.removeAll(keepingCapacity: true)
                }
            }
            try handle.write(contentsOf: Data(out.utf8))
        } catch {
            throw FormatError(path, "cannot write: \(error.localizedDescription)")
        }
    }
}

/// RFC 4180 quoting when needed.
func csvField(_ s: String) -> String {
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}


extension ScoredImpressions {
    /// Request r's fused scores, item ids and order weights (last-task labels), in input order.
    public func gather(request r: Int, fusion: FusionPolicy, scores: inout [Double], ids: inout [Int64], weights: inout [Double]) {
        let t = taskCount
        scores.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
        weights.removeAll(keepingCapacity: true)
        for i32 in requestRows(r) {
            let i = Int(i32)
            scores.append(fused(row: i, fusion))
            ids.append(itemIDs[i])
            weights.append(Double(labels[i * t + t - 1]))
        }
    }
}
