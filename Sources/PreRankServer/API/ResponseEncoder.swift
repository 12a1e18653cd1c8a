import StrictJSON

/// One returned item of a `/prerank` response (SPEC §2).
public struct ScoredItem: Sendable, Equatable {
    public var id: Int64
    /// The fused ranking score (Double: fusion runs in Double, see `FusionPolicy`).
    public var score: Double
    /// The first task's probability.
    public var ctr: Float
    /// The last task's probability.
    public var ctcvr: Float
    /// Every task's probability in model order; only for `"debug": true`, otherwise `nil` and
    /// the key is left out.
    public var tasks: [(name: String, p: Float)]?

    public init(id: Int64, score: Double, ctr: Float, ctcvr: Float, tasks: [(name: String, p: Float)]? = nil) {
        self.id = id
        self.score = score
        self.ctr = ctr
        self.ctcvr = ctcvr
        self.tasks = tasks
    }

    /// The item the engine ranked; `taskNames` (the model's, in order) adds the debug `tasks`.
    public init(_ item: RankedItem, taskNames: [String]? = nil) {
        self.init(id: item.id, score: item.score, ctr: item.probabilities.first ?? 0, ctcvr: item.probabilities.last ?? 0,
                  tasks: taskNames.map { names in zip(names, item.probabilities).map { (name: $0, p: $1) } })
    }

    public static func == (a: ScoredItem, b: ScoredItem) -> Bool {
        guard a.id == b.id, a.score == b.score, a.ctr == b.ctr, a.ctcvr == b.ctcvr else { return false }
        switch (a.tasks, b.tasks) {
        case (nil, nil): return true
        case let (x?, y?): return x.elementsEqual(y) { $0.name == $1.name && $0.p == $1.p }
        default: return false
        }
    }
}

/// A `200` body of `POST /prerank` (SPEC §2), before encoding.
public struct PreRankResponse: Sendable, Equatable {
    public var requestID: String?
    /// Write `requestID` as a JSON integer (the request gave it as one).
    public var requestIDIsInteger = false
    public var modelVersion: String
    /// True when the budget ran out while scoring: `items` are the best of what was scored.
    public var partial: Bool
    public var tookMs: Double
    /// Sorted by score descending, ties by id ascending (the engine's order; not re-sorted here).
    public var items: [ScoredItem]
    /// Candidate ids not in the index, in request order.
    public var unknownIDs: [Int64]
    /// The A/B arm that served the request (`"canary"` or `"primary"`) when a canary is
    /// configured; the key is left out otherwise.
    public var arm: String?
    /// `"debug": true` only: the request's ignored, missing and coerced features (`FeatureAudit`).
    public var features: FeatureAudit?

    public init(requestID: String?, modelVersion: String, partial: Bool, tookMs: Double, items: [ScoredItem],
                unknownIDs: [Int64], arm: String? = nil) {
        self.requestID = requestID
        self.modelVersion = modelVersion
        self.partial = partial
        self.tookMs = tookMs
        self.items = items
        self.unknownIDs = unknownIDs
        self.arm = arm
    }
}

/// Writes a `PreRankResponse` as JSON bytes by hand.
///
/// Why not `JSONEncoder`: 3.7 ms for 10k scores on Linux against well under 1 ms for a manual
/// build (notes/swift-on-linux.md §4), and it could not keep the SPEC's key order. Output:
/// keys in the SPEC's order (`request_id`, `model_version`, `partial`, `took_ms`, `items`,
/// `unknown_ids`, then `arm` when set, then `features` for `"debug": true`); `request_id` is `null` when the request had none.
/// Numbers use Swift's shortest round-trip text (`Float.description` for probabilities, so
/// `0.061` and not `0.06100000068`; `Double.description` for score and took_ms), which is
/// always a valid JSON number for finite values. Non-finite numbers, which JSON cannot carry,
/// are written as `null` (a score can be infinite, e.g. the multiplicative formula with a
/// negative α and a CTR of 0); clients see a missing value, never invalid JSON.
public enum ResponseEncoder {
    public static func encode(_ r: PreRankResponse) -> [UInt8] {
        let perItem = r.items.first?.tasks.map { 80 + $0.count * 32 } ?? 80
        var out: [UInt8] = []
        out.reserveCapacity(128 + r.modelVersion.utf8.count + r.items.count * perItem + r.unknownIDs.count * 21)
        appendLiteral("{\"request_id\":", to: &out)
        if let id = r.requestID {
            if r.requestIDIsInteger { out.append(contentsOf: id.utf8) } else { appendString(id, to: &out) }
        } else {
            appendLiteral("null", to: &out)
        }
        appendLiteral(",\"model_version\":", to: &out)
        appendString(r.modelVersion, to: &out)
        appendLiteral(r.partial ? ",\"partial\":true" : ",\"partial\":false", to: &out)
        appendLiteral(",\"took_ms\":", to: &out)
        appendNumber(r.tookMs, to: &out)
        appendLiteral(",\"items\":[", to: &out)
        for (i, item) in r.items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendLiteral("{\"id\":", to: &out)
            appendInteger(item.id, to: &out)
            appendLiteral(",\"score\":", to: &out)
            appendNumber(item.score, to: &out)
            appendLiteral(",\"ctr\":", to: &out)
            appendNumber(item.ctr, to: &out)
            appendLiteral(",\"ctcvr\":", to: &out)
            appendNumber(item.ctcvr, to: &out)
            if let tasks = item.tasks {
                appendLiteral(",\"tasks\":{", to: &out)
                for (j, task) in tasks.enumerated() {
                    if j > 0 { out.append(UInt8(ascii: ",")) }
                    appendString(task.name, to: &out)
                    out.append(UInt8(ascii: ":"))
                    appendNumber(task.p, to: &out)
                }
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "}"))
        }
        appendLiteral("],\"unknown_ids\":[", to: &out)
        for (i, id) in r.unknownIDs.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendInteger(id, to: &out)
        }
        out.append(UInt8(ascii: "]"))
        if let arm = r.arm {
            appendLiteral(",\"arm\":", to: &out)
            appendString(arm, to: &out)
        }
        if let f = r.features {
            func list(_ names: [String]) -> String { "[" + names.map(JSONText.quote).joined(separator: ",") + "]" }
            appendText(",\"features\":{\"ignored\":\(list(f.ignored)),\"missing\":\(list(f.missing)),\"coerced\":\(list(f.coerced))}", to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A constant piece of JSON: one bulk copy, no String machinery.
    @inline(__always) static func appendLiteral(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    static func appendString(_ s: String, to out: inout [UInt8]) {
        appendText(JSONText.quote(s), to: &out)
    }

    /// Decimal digits written straight into the buffer (ids are most of a large response).
    static func appendInteger(_ v: Int64, to out: inout [UInt8]) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        var m = v.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes, room for 20 digits
        withUnsafeMutableBytes(of: &digits) { raw in
            let buf = raw.bindMemory(to: UInt8.self)
            var i = buf.count
            repeat {
                i -= 1
                buf[i] = UInt8(ascii: "0") + UInt8(m % 10)
                m /= 10
            } while m != 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[i...]))
        }
    }

    static func appendNumber(_ v: Double, to out: inout [UInt8]) {
        guard v.isFinite else { appendLiteral("null", to: &out); return }
        appendText(v.description, to: &out)
    }

    static func appendNumber(_ v: Float, to out: inout [UInt8]) {
        guard v.isFinite else { appendLiteral("null", to: &out); return }
        appendText(v.description, to: &out)
    }

    /// One bulk copy of the text's UTF-8 (a number's text is a small, contiguous string).
    @inline(__always) static func appendText(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { out.append(contentsOf: $0) }
    }
}
