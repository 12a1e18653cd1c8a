/// A set of index rows, one bit per row in 64-bit words (row `r` is bit `r & 63` of word
/// `r >> 6`): the live catalog's hidden base rows and stale delta rows, and the engine's
/// "already seen" marks while it deduplicates candidates.
///
/// Why one type: the word/bit arithmetic was written out at every use, in two modules, and a
/// slip in one copy (a shift by `r` instead of `r & 63`, a word count rounded down) would pass
/// every test that stays under 64 rows. The static forms work on raw word buffers, for the
/// engine's stack scratch and the pointer the scan holds; they are the same arithmetic.
public struct RowBitmap: Sendable, Equatable {
    /// The words, bit `r & 63` of word `r >> 6` for row `r`; empty when no row was ever set
    /// (then no row is in the set, and nothing was allocated).
    public private(set) var words: [UInt64]

    /// The empty set (no storage).
    public init() { words = [] }

    /// True when no storage was allocated (so no row is set).
    @inlinable public var isUnallocated: Bool { words.isEmpty }

    /// Whether `row` is in the set; rows past the words are not.
    @inlinable public func contains(_ row: Int32) -> Bool {
        let w = Self.word(Int(row))
        return w < words.count && words[w] & Self.bit(Int(row)) != 0
    }

    /// Adds `row`, growing the words to reach it; true when it was not in the set.
    @discardableResult public mutating func insert(_ row: Int32) -> Bool {
        let w = Self.word(Int(row)), bit = Self.bit(Int(row))
        if words.count <= w { words += [UInt64](repeating: 0, count: w + 1 - words.count) }
        guard words[w] & bit == 0 else { return false }
        words[w] |= bit
        return true
    }

    /// Grows the words to cover `rows` rows (a bitmap handed to a scan of `rows` rows must not
    /// end short of them).
    public mutating func cover(rows: Int) {
        let n = Self.wordCount(rows: rows)
        if words.count < n { words += [UInt64](repeating: 0, count: n - words.count) }
    }

    // MARK: raw word buffers

    /// Words needed for `rows` rows.
    @inlinable public static func wordCount(rows: Int) -> Int { (rows + 63) / 64 }

    /// The word holding `row`.
    @inlinable @inline(__always) public static func word(_ row: Int) -> Int { row >> 6 }

    /// The bit of `row` within its word.
    @inlinable @inline(__always) public static func bit(_ row: Int) -> UInt64 { UInt64(1) << UInt64(row & 63) }

    /// Whether `row` is set in `words` (which must cover it).
    @inlinable @inline(__always) public static func contains(_ words: UnsafePointer<UInt64>, _ row: Int) -> Bool {
        words[word(row)] & bit(row) != 0
    }

    /// Sets `row` in `words` (which must cover it); true when it was not set.
    @inlinable @inline(__always) public static func insert(_ words: UnsafeMutablePointer<UInt64>, _ row: Int) -> Bool {
        let w = word(row), b = bit(row)
        guard words[w] & b == 0 else { return false }
        words[w] |= b
        return true
    }
}
