import StrictJSON
import TwinTower

/// How one request's `user` and `query` fields met the model's user-side features (issue #27).
///
/// The SPEC ignores features the model does not know, and scores a missing one as zeros; both
/// are right for serving and silent for an integrator, whose misspelt `segmnt`, missing `user`
/// or `query_terms` sent as one string all score with worse features and a 200. The audit is
/// what `/metrics` (`prerank_request_features_total`), `"debug": true` (`features`) and the
/// one-time warning log show, and what `request.unknown_features: reject` refuses.
public struct FeatureAudit: Sendable, Equatable {
    /// The outcome label of `prerank_request_features_total`.
    public enum Outcome: String, Sendable, CaseIterable {
        /// Given and encoded as sent.
        case used
        /// A request field the model has no feature for (`user.segmnt`).
        case ignored
        /// A model feature the request left out, or gave as null, "" or [] (encoded as zeros).
        case missing
        /// A multi-valued feature given one scalar, scored as a one-element list
        /// (`"query_terms": "red shoes"` is one term, not two).
        case coerced
    }

    /// Model features given and encoded as sent, in model order.
    public var used: [String] = []
    /// Request fields the model does not know, as request paths (`user.segmnt`), sorted.
    public var ignored: [String] = []
    /// Model features not given, in model order.
    public var missing: [String] = []
    /// Multi-valued model features given as a scalar, as request paths, in model order.
    public var coerced: [String] = []

    public init(used: [String] = [], ignored: [String] = [], missing: [String] = [], coerced: [String] = []) {
        self.used = used
        self.ignored = ignored
        self.missing = missing
        self.coerced = coerced
    }

    /// Compares `request`'s fields with `fields` (the model's user-side features).
    public static func of(_ request: PreRankRequest, fields: [FeatureSpec]) -> FeatureAudit {
        var audit = FeatureAudit()
        var known = Set<String>()
        known.reserveCapacity(fields.count)
        for f in fields {
            known.insert(f.name)
            let source = request.user[f.name] != nil ? "user" : "query"
            let value = request.user[f.name] ?? request.query[f.name]
            switch value {
            case nil, .null?, .string("")?, .array([])?:
                audit.missing.append(f.name)
            case .string?, .integer?:
                // A categorical value as such; for a multi feature, a one-element list.
                if f.kind == .multi { audit.coerced.append(source + "." + f.name) } else { audit.used.append(f.name) }
            default:
                audit.used.append(f.name)
            }
        }
        for (side, values) in [("user", request.user), ("query", request.query)] {
            for name in values.keys where !known.contains(name) { audit.ignored.append(side + "." + name) }
        }
        audit.ignored.sort()
        return audit
    }

    /// The 400 of `request.unknown_features: reject`, naming the first ignored field.
    public func rejection(modelVersion: String, known: [FeatureSpec]) -> APIError? {
        guard let field = ignored.first else { return nil }
        let names = known.map(\.name).joined(separator: ", ")
        return APIError(status: 400, code: "unknown_feature",
                        message: "\(field) is not a feature of model \(modelVersion) (request.unknown_features: reject); its user-side features: \(names)",
                        field: field)
    }
}
