import Foundation
import StrictJSON
import TwinTower

/// A reload that was applied: the snapshot now in force and what it changed (issue #27).
public struct ReloadOutcome: Sendable {
    public var snapshot: ServingSnapshot
    /// Config keys whose new values are in force, in file order.
    public var applied: [String]
    /// Config keys whose values differ from the running listener's and apply only at the next
    /// restart (`PreRankConfig.restartOnlyKeys`); empty when a restart would change nothing.
    public var needsRestart: [String]
    /// Model directories read and index files mapped by this reload (0 and 0: config only).
    public var modelsRead = 0
    public var indexesMapped = 0

    /// The answer of `POST /admin/reload`.
    public var json: String {
        func list(_ keys: [String]) -> String { "[" + keys.map(JSONText.quote).joined(separator: ",") + "]" }
        return "{\"status\":\"reloaded\",\"model_version\":\(JSONText.quote(snapshot.primary.version)),"
            + "\"applied\":\(list(applied)),\"restart_required\":\(list(needsRestart)),"
            + "\"models_read\":\(modelsRead),\"indexes_mapped\":\(indexesMapped)}"
    }
}
