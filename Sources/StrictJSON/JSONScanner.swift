/// A strict RFC 8259 tokenizer over one request body, for the schema-specific decoders of the
/// server (`/prerank`) and the catalog (`/admin/items`, update-log payloads).
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
///
/// Why `public` and `@inlinable`: the scanner lives in its own module so the catalog's change
/// codec can use it without depending on the server, but the request decoder calls `current`,
/// `nextElement` and `number` per byte or per token; inlinable bodies keep those calls as cheap
/// across the module boundary as they were inside the server module. (`package` with
/// `@inlinable` was tried first: the release binary still called `current` and `nextElement`
/// out of line, and `prerank bench --scenarios request` parsed ~15% slower.) Its other files:
/// JSONScanner+Strings, +Numbers, +Skipping and +Body (a body's object, feature values).
public struct JSONScanner {
    /// Objects and arrays nested deeper than this are refused: the schema needs 3 levels, and
    /// skipping an unknown value recurses once per level, so the bound also bounds the stack.
    public static let maxDepth = 64

    public let bytes: UnsafePointer<UInt8>
    public let count: Int
    /// Offset of the next unread byte.
    public var pos: Int = 0

    @inlinable public init(bytes: UnsafePointer<UInt8>, count: Int) {
        self.bytes = bytes
        self.count = count
    }

    /// A validated number literal: `bytes[start..<end]`.
    public struct Number {
        public var start: Int
        public var end: Int
        /// No fraction and no exponent.
        public var isInteger: Bool
        /// The value when `isInteger` and within Int64; `nil` otherwise.
        public var int64: Int64?

        @inlinable public init(start: Int, end: Int, isInteger: Bool, int64: Int64?) {
            self.start = start
            self.end = end
            self.isInteger = isInteger
            self.int64 = int64
        }
    }

    // MARK: bytes and errors

    /// The byte at `pos`, or 0 at the end of the body.
    @inlinable @inline(__always) public var current: UInt8 { pos < count ? bytes[pos] : 0 }

    @inlinable public var atEnd: Bool { pos >= count }

    @inlinable @inline(__always) public mutating func skipWhitespace() {
        while pos < count {
            let b = bytes[pos]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            pos += 1
        }
    }

    /// A UTF-8 byte order mark may be ignored by parsers (RFC 8259 §8.1); clients on some
    /// platforms send one.
    @inlinable public mutating func skipByteOrderMark() {
        if count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { pos = 3 }
    }

    /// A syntax error at `offset`: says what was expected and what was found there.
    public func syntaxError(_ expected: String, at offset: Int? = nil) -> APIError {
        let at = offset ?? pos
        if at >= count {
            return .badJSON("unexpected end of body at byte \(at), expected \(expected)")
        }
        return .badJSON("expected \(expected) at byte \(at), found \(Self.describe(bytes[at]))")
    }

    public static func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        let hex = String(b, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count == 1 ? "0" : "") + hex
    }

    @inlinable @inline(__always) public mutating func expect(_ byte: UInt8, _ what: String) throws(APIError) {
        guard current == byte else { throw syntaxError(what) }
        pos += 1
    }

    /// Consumes `true`, `false` or `null` at `pos` (the first byte already identified).
    @inlinable public mutating func literal(_ text: StaticString) throws(APIError) {
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
    @inlinable @inline(__always) public mutating func nextMember(_ first: inout Bool) throws(APIError) -> Bool {
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
    @inlinable @inline(__always) public mutating func nextElement(_ first: inout Bool) throws(APIError) -> Bool {
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
    @inlinable public mutating func key() throws(APIError) -> String {
        let name = try string()
        try colon()
        return name
    }

    /// Skips a member's key and the `:` after it without building the key.
    public mutating func skipKey() throws(APIError) {
        try skipString()
        try colon()
    }

    @inlinable mutating func colon() throws(APIError) {
        skipWhitespace()
        try expect(UInt8(ascii: ":"), "':' after the key")
        skipWhitespace()
    }

    /// Whether the byte at `pos` can start a number (`-` or a digit).
    @inlinable public var atNumber: Bool {
        let c = current
        return c == UInt8(ascii: "-") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }
}
