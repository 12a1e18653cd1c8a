import Glibc
import StrictJSON
import TwinTower

/// One request-log line: a JSON object on one line, ending in `\n` (schema in docs/REQUEST_LOG.md).
///
///     {"time":"2026-11-23T02:03:04.123Z","request_id":"r-1","model_version":"demo-1","arm":"stable",
///      "fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0.1},
///      "user":{"age":31.0,"user_id":"u42"},"query":{"query_terms":["red","shoes"]},
///      "candidates":[1001,1002,1003],"items":[{"id":1003,"score":0.0871,"probabilities":{"ctr":0.061,"ctcvr":0.0013}}],
///      "partial":false}
///
/// Keys appear in that order; feature maps are sorted by name. `request_id` is `null` when the
/// request had none, `candidates` is `null` when the request scored the whole index, non-finite
/// numbers are written as `null`. `relevance` is present only when the request carried it.
public enum RequestLogLine {
    public static func encode(
        time: Double,
        requestID: String?,
        modelVersion: String,
        arm: String,
        fusion: (formula: String, alpha: Double, beta: Double, gamma: Double),
        user: [String: FeatureValue],
        query: [String: FeatureValue],
        candidates: [Int64]?,
        relevance: [Double]? = nil,
        items: [(id: Int64, score: Double, probabilities: [Float])],
        tasks: [String],
        partial: Bool,
        dropped: DroppedSample.Sample? = nil
    ) -> [UInt8] {
        var s = ""
        s.reserveCapacity(256 + 24 * (candidates?.count ?? 0) + 96 * items.count)
        s += "{\"time\":\""
        s += rfc3339(time)
        s += "\",\"request_id\":"
        s += requestID.map(JSONText.quote) ?? "null"
        s += ",\"model_version\":"
        s += JSONText.quote(modelVersion)
        s += ",\"arm\":"
        s += JSONText.quote(arm)
        s += ",\"fusion\":{\"formula\":"
        s += JSONText.quote(fusion.formula)
        s += ",\"alpha\":" + number(fusion.alpha) + ",\"beta\":" + number(fusion.beta) + ",\"gamma\":" + number(fusion.gamma)
        s += "},\"user\":"
        featureMap(user, into: &s)
        s += ",\"query\":"
        featureMap(query, into: &s)
        s += ",\"candidates\":"
        if let candidates {
            s += "["
            for (i, id) in candidates.enumerated() {
                if i > 0 { s += "," }
                s += String(id)
            }
            s += "]"
        } else {
            s += "null"
        }
        if let relevance {
            s += ",\"relevance\":["
            for (i, r) in relevance.enumerated() {
                if i > 0 { s += "," }
                s += number(r)
            }
            s += "]"
        }
        s += ",\"items\":["
        let quotedTasks = tasks.map(JSONText.quote)
        for (i, item) in items.enumerated() {
            if i > 0 { s += "," }
            s += "{\"id\":" + String(item.id) + ",\"score\":" + number(item.score) + ",\"probabilities\":{"
            for (k, p) in zip(quotedTasks, item.probabilities).enumerated() {
                if k > 0 { s += "," }
                s += p.0 + ":" + number(p.1)
            }
            s += "}}"
        }
        s += "],\"partial\":" + (partial ? "true" : "false")
        if let dropped {
            // `request_log.candidate_sample`: candidates scored and not returned (docs/REQUEST_LOG.md).
            s += ",\"dropped\":{\"inclusion\":" + number(dropped.inclusion) + ",\"items\":["
            for (i, item) in dropped.items.enumerated() {
                if i > 0 { s += "," }
                s += "{\"id\":" + String(item.id) + ",\"probabilities\":{"
                for (k, p) in zip(quotedTasks, item.probabilities).enumerated() {
                    if k > 0 { s += "," }
                    s += p.0 + ":" + number(p.1)
                }
                s += "}}"
            }
            s += "]}"
        }
        s += "}\n"
        return Array(s.utf8)
    }

    /// `2026-11-23T02:03:04.123Z` (RFC 3339, UTC, milliseconds).
    public static func rfc3339(_ time: Double) -> String {
        let millis = Int64((time * 1000).rounded(.down))
        var seconds = time_t(millis >= 0 ? millis / 1000 : (millis - 999) / 1000)
        let ms = Int(millis - Int64(seconds) * 1000)
        var tm = tm()
        gmtime_r(&seconds, &tm)
        func pad(_ v: Int, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        return pad(Int(tm.tm_year) + 1900, 4) + "-" + pad(Int(tm.tm_mon) + 1, 2) + "-" + pad(Int(tm.tm_mday), 2) + "T"
            + pad(Int(tm.tm_hour), 2) + ":" + pad(Int(tm.tm_min), 2) + ":" + pad(Int(tm.tm_sec), 2) + "." + pad(ms, 3) + "Z"
    }

    static func number(_ v: Double) -> String {
        guard v.isFinite else { return "null" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return v.description
    }

    static func number(_ v: Float) -> String {
        v.isFinite ? v.description : "null"
    }

    static func featureMap(_ map: [String: FeatureValue], into s: inout String) {
        s += "{"
        for (i, key) in map.keys.sorted().enumerated() {
            if i > 0 { s += "," }
            s += JSONText.quote(key) + ":"
            value(map[key]!, into: &s)
        }
        s += "}"
    }

    static func value(_ v: FeatureValue, into s: inout String) {
        switch v {
        case .string(let x): s += JSONText.quote(x)
        case .integer(let x): s += String(x)
        // A dense value keeps its fraction (31.0, not 31) so it reads back as the number it was.
        case .number(let x): s += x.isFinite ? x.description : "null"
        case .bool(let x): s += x ? "true" : "false"
        case .null: s += "null"
        case .array(let xs):
            s += "["
            for (i, x) in xs.enumerated() {
                if i > 0 { s += "," }
                value(x, into: &s)
            }
            s += "]"
        }
    }
}
