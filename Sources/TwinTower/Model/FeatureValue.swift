/// One raw feature value as it arrives from a request or a CSV cell, before encoding.
///
/// Categorical values may be strings or integers (hashed alike: JSON `42` and CSV `42` give the
/// same bucket); multi-valued fields carry an array of those; dense fields a number.
/// `number` holds a JSON number written with a fraction or exponent; `integer` one without.
public enum FeatureValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case array([FeatureValue])
    case null
}

/// The raw features of one side (user-query or item), looked up by field name.
///
/// `source` names where a field came from (for example `user` or `query`), so that an encoding
/// error can point at the exact request field (`query.query_terms[2]`).
public struct FeatureRow: Sendable {
    public var values: [String: FeatureValue]
    public var sources: [String: String]

    public init(values: [String: FeatureValue] = [:], sources: [String: String] = [:]) {
        self.values = values
        self.sources = sources
    }

    public subscript(name: String) -> FeatureValue? {
        get { values[name] }
        set { values[name] = newValue }
    }

    /// The path a client would recognise for `name`, e.g. `user.age`.
    public func path(of name: String) -> String {
        if let source = sources[name] { return "\(source).\(name)" }
        return name
    }
}
