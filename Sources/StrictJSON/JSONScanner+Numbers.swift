/// Numbers: the RFC 8259 grammar, an Int64 fast path (ids are the bulk of a request body) and
/// the Double conversion that must round exactly as `JSONDecoder` does.
extension JSONScanner {
    /// Scans a number at `pos` per the RFC 8259 grammar (no leading zeros, no `+`, no bare `-`,
    /// digits on both sides of `.`, digits after `e`) and accumulates its value when it is an
    /// integer that fits Int64.
    @inlinable @inline(__always) public mutating func number() throws(APIError) -> Number {
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
    @inlinable @inline(__always) static func isEightDigits(_ v: UInt64) -> Bool {
        (v & 0xF0F0_F0F0_F0F0_F0F0) | (((v &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4) == 0x3333_3333_3333_3333
    }

    /// The value of 8 ASCII digits in a little-endian word, first digit most significant.
    @inlinable @inline(__always) static func eightDigits(_ v: UInt64) -> UInt64 {
        var x = v & 0x0F0F_0F0F_0F0F_0F0F
        x = (x &* 2561) >> 8
        x = ((x & 0x00FF_00FF_00FF_00FF) &* 6_553_601) >> 16
        return ((x & 0x0000_FFFF_0000_FFFF) &* 42_949_672_960_001) >> 32
    }

    /// Powers of ten exactly representable as Double (10^0 ... 10^22).
    @usableFromInline static let exactPowers: [Double] = (0...22).map { e in
        var p = 1.0
        for _ in 0..<e { p *= 10 }
        return p
    }

    /// The Double nearest to a number literal, or `nil` when it overflows to infinity.
    ///
    /// Small literals take Clinger's fast path (a mantissa below 2^53 times or divided by an
    /// exact power of ten is correctly rounded by one IEEE operation); the rest go through the
    /// standard library's correctly rounded `Double(Substring)`, so results equal `JSONDecoder`'s.
    @inlinable public func double(_ n: Number) -> Double? {
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
}
