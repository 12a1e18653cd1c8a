/// Maps item ids to index rows.
///
/// Ids are stored ascending in the file. When they form one contiguous range (the common case
/// for catalogs numbered 0..N-1 or from an offset) the row is `id - first`; otherwise an
/// open-addressing table (load factor ≤ 0.5, linear probing) answers in about one cache miss,
/// which matters for 10k random candidates (a binary search would take ~20).
public struct IDTable: Sendable {
    private let first: Int64
    private let count: Int
    private let contiguous: Bool
    private let mask: Int
    /// Slot keys and `row + 1` (0 = empty).
    private let keys: [Int64]
    private let rows: [Int32]

    /// - parameter ids: ascending, unique.
    public init(ids: UnsafeBufferPointer<Int64>) {
        count = ids.count
        first = ids.first ?? 0
        if let last = ids.last, last &- first == Int64(ids.count - 1) {
            contiguous = true
            mask = 0
            keys = []
            rows = []
            return
        }
        contiguous = false
        var capacity = 16
        while capacity < ids.count * 2 { capacity <<= 1 }
        mask = capacity - 1
        var keys = [Int64](repeating: 0, count: capacity)
        var rows = [Int32](repeating: 0, count: capacity)
        for (row, id) in ids.enumerated() {
            var slot = Self.hash(id) & (capacity - 1)
            while rows[slot] != 0 { slot = (slot + 1) & (capacity - 1) }
            keys[slot] = id
            rows[slot] = Int32(row + 1)
        }
        self.keys = keys
        self.rows = rows
    }

    @inline(__always)
    static func hash(_ id: Int64) -> Int {
        let h = UInt64(bitPattern: id) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The row of `id`, or -1 when the index does not hold it.
    @inline(__always)
    public func row(of id: Int64) -> Int32 {
        if contiguous {
            let offset = id &- first
            return (offset >= 0 && offset < Int64(count)) ? Int32(offset) : -1
        }
        return keys.withUnsafeBufferPointer { k in
            rows.withUnsafeBufferPointer { r in
                var slot = Self.hash(id) & mask
                while true {
                    let v = r[slot]
                    if v == 0 { return -1 }
                    if k[slot] == id { return v - 1 }
                    slot = (slot + 1) & mask
                }
            }
        }
    }
}
