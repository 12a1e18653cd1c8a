/// A strict RFC 8259 tokenizer over one request body, for the schema-specific `/prerank` decoder.
///
/// Why hand-written: `JSONDecoder` is about 19× slower on a 10k-candidate body (`prerank bench`,
/// request scenario; figures in docs/PERFORMANCE.md, the one place they are kept), and the
/// decoder runs on every request.
/// The scanner validates everything `JSONDecoder` would refuse (grammar, string escapes, UTF-8,
/// numbers not representable as a finite Double) so that the fast path is not a lenient path.
///
/// The scanner works on a borrowed pointer: it must not outlive the buffer it was made from
/// (`RequestDecoder` keeps it inside `withUnsafeBytes`). Every read is bounds-checked against
/// `count`; `current` answers 0 past the end, a byte that is invalid everywhere in JSON text
/// outside strings, and strings check the end explicitly.
struct JSONScanner {
    /// Objects and arrays nested deeper than this are refused: the schema needs 3 levels, and
    /// skipping an unknown value recurses once per level, so the bound also bounds the stack.
    static let maxDepth = 64

    let bytes: UnsafePointer<UInt8>
    let count: Int
    /// Offset of the next unread byte.
    var pos: Int = 0

    init(bytes: UnsafePointer<UInt8>, count: Int) {
        self.bytes = bytes
        self.count = count
    }

    /// A validated number literal: `bytes[start..<end]`.
    struct Number {
        var start: Int
        var end: Int
        /// No fraction and no exponent.
        var isInteger: Bool
        /// The value when `isInteger` and within Int64; `nil` otherwise.
        var int64: Int64?
    }

    // MARK: bytes and errors

    /// The byte at `pos`, or 0 at the end of the body.
    @inline(__always) var current: UInt8 { pos < count ? bytes[pos] : 0 }

    var atEnd: Bool { pos >= count }

    @inline(__always) mutating func skipWhitespace() {
        while pos < count {
            let b = bytes[pos]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            pos += 1
        }
    }

    /// A UTF-8 byte order mark may be ignored by parsers (RFC 8259 §8.1); clients on some
    /// platforms send one.
    mutating func skipByteOrderMark() {
        if count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { pos = 3 }
    }

    /// A syntax error at `offset`: says what was expected and what was found there.
    func syntaxError(_ expected: String, at offset: Int? = nil) -> APIError {
        let at = offset ?? pos
        if at >= count {
            return .badJSON("unexpected end of body at byte \(at), expected \(expected)")
        }
        return .badJSON("expected \(expected) at byte \(at), found \(Self.describe(bytes[at]))")
    }

    static func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        let hex = String(b, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count == 1 ? "0" : "") + hex
    }

    @inline(__always) mutating func expect(_ byte: UInt8, _ what: String) throws(APIError) {
        guard current == byte else { throw syntaxError(what) }
        pos += 1
    }

    /// Consumes `true`, `false` or `null` at `pos` (the first byte already identified).
    mutating func literal(_ text: StaticString) throws(APIError) {
        let n = text.utf8CodeUnitCount
        let start = pos
        let p = text.utf8Start
        for i in 0..<n {
            guard start + i < count, bytes[start + i] == p[i] else {
                throw syntaxError("'\(text)'", at: start)
            }
        }
        pos += n
    }

    // MARK: containers

    /// Steps to the next member of an object whose `{` was consumed: true when positioned at a
    /// member's key (read it with `key()` or `skipKey()`), false once past the closing `}`.
    /// `first` is true before the first call; it tracks whether a `,` is due.
    @inline(__always) mutating func nextMember(_ first: inout Bool) throws(APIError) -> Bool {
        skipWhitespace()
        if first {
            first = false
            if current == UInt8(ascii: "}") { pos += 1; return false }
        } else if current == UInt8(ascii: ",") {
            pos += 1
            skipWhitespace()
        } else {
            try expect(UInt8(ascii: "}"), "',' or '}'")
            return false
        }
        return true
    }

    /// Steps to the next element of an array whose `[` was consumed: true when positioned at an
    /// element, false once past the closing `]`. `first` as in `nextMember`.
    @inline(__always) mutating func nextElement(_ first: inout Bool) throws(APIError) -> Bool {
        skipWhitespace()
        if first {
            first = false
            if current == UInt8(ascii: "]") { pos += 1; return false }
        } else if current == UInt8(ascii: ",") {
            pos += 1
            skipWhitespace()
        } else {
            try expect(UInt8(ascii: "]"), "',' or ']'")
            return false
        }
        return true
    }

    /// Reads a member's key and the `:` after it; leaves `pos` at the value.
    mutating func key() throws(APIError) -> String {
        let name = try string()
        try colon()
        return name
    }

    /// Skips a member's key and the `:` after it without building the key.
    mutating func skipKey() throws(APIError) {
        try skipString()
        try colon()
    }

    private mutating func colon() throws(APIError) {
        skipWhitespace()
        try expect(UInt8(ascii: ":"), "':' after the key")
        skipWhitespace()
    }

    /// Whether the byte at `pos` can start a number (`-` or a digit).
    var atNumber: Bool {
        let c = current
        return c == UInt8(ascii: "-") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }

    // MARK: strings

    /// Reads a string whose opening quote is at `pos`; validates escapes and UTF-8.
    mutating func string() throws(APIError) -> String {
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
    mutating func skipString() throws(APIError) {
        _ = try string()
    }

    /// Decodes one escape at `pos` (the backslash) and appends its UTF-8 bytes.
    private mutating func escape(into buffer: inout [UInt8]) throws(APIError) {
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

    private mutating func hex4() throws(APIError) -> UInt32 {
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

    private static func appendUTF8(_ v: UInt32, to buffer: inout [UInt8]) {
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
    private mutating func utf8Sequence() throws(APIError) {
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

    // MARK: numbers

    /// Scans a number at `pos` per the RFC 8259 grammar (no leading zeros, no `+`, no bare `-`,
    /// digits on both sides of `.`, digits after `e`) and accumulates its value when it is an
    /// integer that fits Int64.
    @inline(__always) mutating func number() throws(APIError) -> Number {
        let start = pos
        var negative = false
        if current == UInt8(ascii: "-") { negative = true; pos += 1 }
        var magnitude: UInt64 = 0
        var digits = 0
        let first = current
        if first == UInt8(ascii: "0") {
            pos += 1
            digits = 1
            let next = current
            if next >= UInt8(ascii: "0") && next <= UInt8(ascii: "9") {
                throw .badJSON("leading zero in a number at byte \(start)")
            }
        } else if first >= UInt8(ascii: "1") && first <= UInt8(ascii: "9") {
            // Eight digits at a time while they fit the 19 accumulated: ids are long digit
            // runs, and one multiply chain per 8 digits halves the time of a 10k-id body.
            while digits <= 11 && pos + 8 <= count {
                let chunk = UInt64(littleEndian: UnsafeRawPointer(bytes + pos).loadUnaligned(as: UInt64.self))
                guard Self.isEightDigits(chunk) else { break }
                magnitude = magnitude &* 100_000_000 &+ Self.eightDigits(chunk)
                digits += 8
                pos += 8
            }
            while pos < count {
                let d = bytes[pos] &- UInt8(ascii: "0")
                guard d < 10 else { break }
                // 19 digits always fit UInt64; more are out of Int64 range anyway.
                if digits < 19 { magnitude = magnitude &* 10 &+ UInt64(d) }
                digits += 1
                pos += 1
            }
        } else {
            throw syntaxError(negative ? "a digit after '-'" : "a value", at: pos)
        }
        var isInteger = true
        if current == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard current >= UInt8(ascii: "0") && current <= UInt8(ascii: "9") else { throw syntaxError("a digit after '.'") }
            while current >= UInt8(ascii: "0") && current <= UInt8(ascii: "9") { pos += 1 }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { pos += 1 }
            guard current >= UInt8(ascii: "0") && current <= UInt8(ascii: "9") else { throw syntaxError("a digit in the exponent") }
            while current >= UInt8(ascii: "0") && current <= UInt8(ascii: "9") { pos += 1 }
        }
        var value: Int64? = nil
        if isInteger && digits <= 19 {
            if negative {
                if magnitude <= UInt64(Int64.max) { value = -Int64(magnitude) }
                else if magnitude == UInt64(Int64.max) + 1 { value = .min }
            } else if magnitude <= UInt64(Int64.max) {
                value = Int64(magnitude)
            }
        }
        return Number(start: start, end: pos, isInteger: isInteger, int64: value)
    }

    /// Whether all 8 bytes of a little-endian word are ASCII digits (SWAR, as in simdjson).
    @inline(__always) static func isEightDigits(_ v: UInt64) -> Bool {
        (v & 0xF0F0_F0F0_F0F0_F0F0) | (((v &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4) == 0x3333_3333_3333_3333
    }

    /// The value of 8 ASCII digits in a little-endian word, first digit most significant.
    @inline(__always) static func eightDigits(_ v: UInt64) -> UInt64 {
        var x = v & 0x0F0F_0F0F_0F0F_0F0F
        x = (x &* 2561) >> 8
        x = ((x & 0x00FF_00FF_00FF_00FF) &* 6_553_601) >> 16
        return ((x & 0x0000_FFFF_0000_FFFF) &* 42_949_672_960_001) >> 32
    }

    /// Powers of ten exactly representable as Double (10^0 ... 10^22).
    private static let exactPowers: [Double] = (0...22).map { e in
        var p = 1.0
        for _ in 0..<e { p *= 10 }
        return p
    }

    /// The Double nearest to a number literal, or `nil` when it overflows to infinity.
    ///
    /// Small literals take Clinger's fast path (a mantissa below 2^53 times or divided by an
    /// exact power of ten is correctly rounded by one IEEE operation); the rest go through the
    /// standard library's correctly rounded `Double(Substring)`, so results equal `JSONDecoder`'s.
    func double(_ n: Number) -> Double? {
        if let v = n.int64, v.magnitude < (1 << 53) { return Double(v) }
        var mantissa: UInt64 = 0
        var significant = 0
        var fractionDigits = 0
        var i = n.start
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var inFraction = false
        var exponent = 0
        var exact = true
        scan: while i < n.end {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if mantissa != 0 || c != UInt8(ascii: "0") { significant += 1 }
                if significant > 15 { exact = false; break scan }
                mantissa = mantissa * 10 + UInt64(c - UInt8(ascii: "0"))
                if inFraction { fractionDigits += 1 }
            case UInt8(ascii: "."):
                inFraction = true
            default:  // e or E
                var j = i + 1
                var expNegative = false
                if bytes[j] == UInt8(ascii: "-") { expNegative = true; j += 1 } else if bytes[j] == UInt8(ascii: "+") { j += 1 }
                while j < n.end {
                    exponent = exponent * 10 + Int(bytes[j] - UInt8(ascii: "0"))
                    if exponent > 1000 { exact = false; break scan }
                    j += 1
                }
                if expNegative { exponent = -exponent }
                break scan
            }
            i += 1
        }
        if exact {
            let e = exponent - fractionDigits
            if mantissa == 0 { return negative ? -0.0 : 0.0 }
            if e >= -22 && e <= 22 {
                let m = Double(mantissa)
                let v = e >= 0 ? m * Self.exactPowers[e] : m / Self.exactPowers[-e]
                return negative ? -v : v
            }
        }
        let text = String(decoding: UnsafeBufferPointer(start: bytes + n.start, count: n.end - n.start), as: UTF8.self)
        guard let v = Double(Substring(text)), v.isFinite else { return nil }
        return v
    }

    // MARK: skipping

    /// Checks that the whole buffer is one JSON value with only whitespace around it. Numbers
    /// are checked for grammar only: this pass looks for syntax errors, and a number out of
    /// Double range inside a known field is that field's error. A syntax error inside the value
    /// of a top-level member names that member's key as its field, as the decoder's does.
    mutating func validateDocument() throws(APIError) {
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
    mutating func skipValue(depth: Int, checkRange: Bool = true) throws(APIError) {
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
    func naming(_ key: String) -> APIError {
        guard field == nil else { return self }
        var e = self
        e.field = key
        return e
    }
}
