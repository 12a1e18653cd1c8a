/// Skipping: values the decoders do not read (unknown keys), and the whole-document pass that
/// turns a schema error found before a syntax error into the syntax error a client should see.
extension JSONScanner {
    /// Checks that the whole buffer is one JSON value with only whitespace around it. Numbers
    /// are checked for grammar only: this pass looks for syntax errors, and a number out of
    /// Double range inside a known field is that field's error. A syntax error inside the value
    /// of a top-level member names that member's key as its field, as the decoder's does.
    public mutating func validateDocument() throws(APIError) {
        pos = 0
        skipByteOrderMark()
        skipWhitespace()
        if current == UInt8(ascii: "{") {
            pos += 1
            var first = true
            while try nextMember(&first) {
                let name = try key()
                do throws(APIError) {
                    try skipValue(depth: 1, checkRange: false)
                } catch {
                    throw error.naming(name)
                }
            }
        } else {
            try skipValue(depth: 0, checkRange: false)
        }
        skipWhitespace()
        guard atEnd else { throw .badJSON("trailing data after the JSON value at byte \(pos)") }
    }

    /// Skips one value of any type at `pos`, validating it as strictly as a parsed one;
    /// `depth` is the nesting of the container holding it. With `checkRange`, a number that
    /// overflows Double is refused, as `JSONDecoder` refuses it.
    public mutating func skipValue(depth: Int, checkRange: Bool = true) throws(APIError) {
        switch current {
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "{"):
            guard depth < Self.maxDepth else { throw .badJSON("nesting deeper than \(Self.maxDepth) levels at byte \(pos)") }
            pos += 1
            var first = true
            while try nextMember(&first) {
                try skipKey()
                try skipValue(depth: depth + 1, checkRange: checkRange)
            }
        case UInt8(ascii: "["):
            guard depth < Self.maxDepth else { throw .badJSON("nesting deeper than \(Self.maxDepth) levels at byte \(pos)") }
            pos += 1
            var first = true
            while try nextElement(&first) {
                try skipValue(depth: depth + 1, checkRange: checkRange)
            }
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default:
            let n = try number()
            if checkRange && n.int64 == nil && double(n) == nil {
                throw .badJSON("number at byte \(n.start) is out of range of a 64-bit float")
            }
        }
    }
}

extension APIError {
    /// This error with `field` set to `key` when it names no field yet: a syntax error inside
    /// a top-level member's value is reported against that member.
    public func naming(_ key: String) -> APIError {
        guard field == nil else { return self }
        var e = self
        e.field = key
        return e
    }
}
