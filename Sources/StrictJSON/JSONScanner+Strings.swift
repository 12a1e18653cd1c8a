/// Strings: the one validating reader of keys and string values (escapes, surrogate pairs,
/// UTF-8), kept apart from the grammar of containers because it is where most of the strictness
/// lives.
extension JSONScanner {
    /// Reads a string whose opening quote is at `pos`; validates escapes and UTF-8.
    @inlinable public mutating func string() throws(APIError) -> String {
        try expect(UInt8(ascii: "\""), "a string")
        let start = pos
        // Fast path: no escapes (the usual key or value). Non-ASCII is validated in place.
        while true {
            guard pos < count else { throw syntaxError("'\"' to close the string opened at byte \(start - 1)") }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(start: bytes + start, count: pos - start), as: UTF8.self)
                pos += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw .badJSON("control character \(Self.describe(b)) in a string at byte \(pos); escape it") }
            if b < 0x80 { pos += 1 } else { try utf8Sequence() }
        }
        // Slow path: copy what was scanned, then decode escapes into the buffer.
        var buffer = [UInt8](UnsafeBufferPointer(start: bytes + start, count: pos - start))
        while true {
            guard pos < count else { throw syntaxError("'\"' to close the string opened at byte \(start - 1)") }
            let b = bytes[pos]
            switch b {
            case UInt8(ascii: "\""):
                pos += 1
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try escape(into: &buffer)
            case 0..<0x20:
                throw .badJSON("control character \(Self.describe(b)) in a string at byte \(pos); escape it")
            case 0..<0x80:
                buffer.append(b)
                pos += 1
            default:
                let s = pos
                try utf8Sequence()
                buffer.append(contentsOf: UnsafeBufferPointer(start: bytes + s, count: pos - s))
            }
        }
    }

    /// Skips a string at `pos` with the same validation as `string()`. It builds the string and
    /// drops it: skipped strings (unknown keys, error-path re-validation) are rare, and one
    /// validating loop is easier to trust than two.
    public mutating func skipString() throws(APIError) {
        _ = try string()
    }

    /// Decodes one escape at `pos` (the backslash) and appends its UTF-8 bytes.
    @usableFromInline mutating func escape(into buffer: inout [UInt8]) throws(APIError) {
        let at = pos
        guard pos + 1 < count else { throw syntaxError("an escape", at: count) }
        let e = bytes[pos + 1]
        pos += 2
        switch e {
        case UInt8(ascii: "\""): buffer.append(0x22)
        case UInt8(ascii: "\\"): buffer.append(0x5C)
        case UInt8(ascii: "/"): buffer.append(0x2F)
        case UInt8(ascii: "b"): buffer.append(0x08)
        case UInt8(ascii: "f"): buffer.append(0x0C)
        case UInt8(ascii: "n"): buffer.append(0x0A)
        case UInt8(ascii: "r"): buffer.append(0x0D)
        case UInt8(ascii: "t"): buffer.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if scalar >= 0xD800 && scalar < 0xDC00 {
                // A high surrogate must be followed by an escaped low surrogate.
                guard pos + 1 < count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                    throw .badJSON("lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) at byte \(at)")
                }
                pos += 2
                let low = try hex4()
                guard low >= 0xDC00 && low < 0xE000 else {
                    throw .badJSON("lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) at byte \(at)")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw .badJSON("lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) at byte \(at)")
            }
            Self.appendUTF8(scalar, to: &buffer)
        default:
            throw .badJSON("invalid escape '\\\(Character(Unicode.Scalar(e)))' at byte \(at)")
        }
    }

    mutating func hex4() throws(APIError) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 {
            guard pos + i < count else { throw syntaxError("4 hex digits after \\u", at: count) }
            let c = bytes[pos + i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw syntaxError("4 hex digits after \\u", at: pos + i)
            }
            v = v << 4 | UInt32(d)
        }
        pos += 4
        return v
    }

    static func appendUTF8(_ v: UInt32, to buffer: inout [UInt8]) {
        switch v {
        case 0..<0x80:
            buffer.append(UInt8(v))
        case 0x80..<0x800:
            buffer.append(UInt8(0xC0 | v >> 6)); buffer.append(UInt8(0x80 | v & 0x3F))
        case 0x800..<0x10000:
            buffer.append(UInt8(0xE0 | v >> 12)); buffer.append(UInt8(0x80 | v >> 6 & 0x3F))
            buffer.append(UInt8(0x80 | v & 0x3F))
        default:
            buffer.append(UInt8(0xF0 | v >> 18)); buffer.append(UInt8(0x80 | v >> 12 & 0x3F))
            buffer.append(UInt8(0x80 | v >> 6 & 0x3F)); buffer.append(UInt8(0x80 | v & 0x3F))
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `pos` (lead byte ≥ 0x80) and steps over it.
    /// Refuses overlong forms, UTF-16 surrogates and code points above U+10FFFF (Unicode 15
    /// table 3-7), as the standard library's validation does.
    @usableFromInline mutating func utf8Sequence() throws(APIError) {
        let b0 = bytes[pos]
        let length: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF  // range of the second byte
        switch b0 {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw .badJSON("invalid UTF-8 byte \(Self.describe(b0)) at byte \(pos)")
        }
        guard pos + length <= count else { throw .badJSON("truncated UTF-8 sequence at byte \(pos)") }
        let b1 = bytes[pos + 1]
        guard b1 >= low && b1 <= high else { throw .badJSON("invalid UTF-8 sequence at byte \(pos)") }
        for i in 2..<length where bytes[pos + i] & 0xC0 != 0x80 {
            throw .badJSON("invalid UTF-8 sequence at byte \(pos)")
        }
        pos += length
    }
}
