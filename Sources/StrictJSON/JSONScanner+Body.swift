import TwinTower

/// A JSON request body that must be one object (the `/prerank` and `/admin/items` decoders).
extension JSONScanner {
    /// Skips a byte-order mark and white space and consumes the body's opening `{`.
    public mutating func openBodyObject() throws(APIError) {
        skipByteOrderMark()
        skipWhitespace()
        guard current == UInt8(ascii: "{") else {
            if atEnd { throw .badJSON("empty body; expected a JSON object") }
            throw syntaxError("a JSON object ('{')")
        }
        pos += 1
    }

    /// After the body's object: only white space may follow.
    public mutating func closeBody() throws(APIError) {
        skipWhitespace()
        guard atEnd else { throw .badJSON("trailing data after the JSON object at byte \(pos)") }
    }
}

/// Feature values (SPEC §2: a scalar, or an array of scalars), shared by the `/prerank` decoder
/// and the `/admin/items` decoder so both read a feature the same way.
extension JSONScanner {
    /// A feature value at `pos`; `path` names it in errors (built only on an error path).
    @inlinable public mutating func featureValue(at path: @autoclosure () -> String) throws(APIError) -> FeatureValue {
        guard current == UInt8(ascii: "[") else {
            if let v = try featureScalar(path()) { return v }
            throw .badField(path(), "a feature value must be a string, number, boolean, null or an array of those")
        }
        pos += 1
        var values: [FeatureValue] = []
        var first = true
        while try nextElement(&first) {
            guard let v = try featureScalar("\(path())[\(values.count)]") else {
                throw .badField("\(path())[\(values.count)]", "a feature array holds only strings, numbers, booleans and nulls")
            }
            values.append(v)
        }
        return .array(values)
    }

    /// A scalar feature value at `pos`, or `nil` (nothing consumed) for an array or object.
    @inlinable public mutating func featureScalar(_ path: @autoclosure () -> String) throws(APIError) -> FeatureValue? {
        switch current {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "["), UInt8(ascii: "{"): return nil
        default:
            let n = try number()
            if let v = n.int64 { return .integer(v) }
            guard let d = double(n) else { throw .badField(path(), "number is out of range of a 64-bit float") }
            return .number(d)
        }
    }
}
