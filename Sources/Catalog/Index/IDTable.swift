import CKernels
import TwinTower

/// Maps item ids to index rows.
///
/// Ids are stored ascending in the file. When they form one contiguous range (the common case
/// for catalogs numbered 0..N-1 or from an offset) the row is `id - first`; otherwise an
/// open-addressing table (load factor ≤ 0.5, linear probing) of 16-byte slots holding the key
/// and the row together, so a lookup costs one cache miss, not one for the key and one for the
/// row. `rows(of:into:)` resolves a whole candidate list in C with the slot of the id 16 places
/// ahead prefetched (`pk_lookup_rows`): 10k random ids of a 1M-item table are ~10k misses, and
/// without the prefetch the core keeps only a few of them in flight.
public struct IDTable: Sendable {
    private let first: Int64
    private let count: Int
    private let contiguous: Bool
    private let mask: Int
    /// `[mask + 1]` slots; `row1 == 0` is empty.
    private let storage: SlotStorage?

    /// - parameters:
    ///   - ids: ascending, unique.
    ///   - hugePages: hold the slots in huge pages (serving: a 1M-id table is 32 MB of random reads).
    public init(ids: UnsafeBufferPointer<Int64>, hugePages: Bool = false) {
        count = ids.count
        first = ids.first ?? 0
        if let last = ids.last, last &- first == Int64(ids.count - 1) {
            contiguous = true
            mask = 0
            storage = nil
            return
        }
        contiguous = false
        (mask, storage) = Self.hashed(ids, count: ids.count, hugePages: hugePages) { _ in false }
    }

    /// A hashed table over rows in any order, leaving out the rows `skip` names: the live
    /// catalog's delta, whose rows are in append order and where an overridden item's earlier
    /// row is stale (`ItemDelta`). Every kept id must be unique.
    public init(hashing ids: UnsafeBufferPointer<Int64>, skip: (Int) -> Bool) {
        var kept = 0
        for row in 0..<ids.count where !skip(row) { kept += 1 }
        count = kept
        first = 0
        contiguous = false
        (mask, storage) = Self.hashed(ids, count: kept, hugePages: false, skip: skip)
    }

    /// The slots (load factor ≤ 0.5, linear probing) holding `ids[row]` → row for every row
    /// `skip` keeps; `count` of them.
    private static func hashed(_ ids: UnsafeBufferPointer<Int64>, count: Int, hugePages: Bool,
                               skip: (Int) -> Bool) -> (mask: Int, storage: SlotStorage) {
        var capacity = 16
        while capacity < count * 2 { capacity <<= 1 }
        let storage = SlotStorage(capacity: capacity, hugePages: hugePages)
        let slots = storage.slots
        for (row, id) in ids.enumerated() where !skip(row) {
            var slot = hash(id) & (capacity - 1)
            while slots[slot].row1 != 0 { slot = (slot + 1) & (capacity - 1) }
            slots[slot] = pk_id_slot(key: id, row1: Int32(row + 1), pad: 0)
        }
        storage.seal()
        return (capacity - 1, storage)
    }

    /// The slot hash; `pk_lookup_rows` computes the same bits in C.
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
        let s = storage!.slots
        var slot = Self.hash(id) & mask
        while true {
            let e = s[slot]
            if e.row1 == 0 { return -1 }
            if e.key == id { return e.row1 - 1 }
            slot = (slot + 1) & mask
        }
    }

    /// Rows of every id in `ids` (-1 for unknown ones), written to `rows[0 ..< ids.count]`.
    public func rows(of ids: UnsafeBufferPointer<Int64>, into rows: UnsafeMutablePointer<Int32>) {
        guard let base = ids.baseAddress, !ids.isEmpty else { return }
        if contiguous {
            for i in 0..<ids.count {
                let offset = base[i] &- first
                rows[i] = (offset >= 0 && offset < Int64(count)) ? Int32(offset) : -1
            }
            return
        }
        pk_lookup_rows(storage!.slots, UInt64(mask), base, Int64(ids.count), rows)
    }
}

/// The slots of an `IDTable`: zeroed memory (huge pages when asked for), written once while
/// the table is built, then read-only and shared by every request.
final class SlotStorage: @unchecked Sendable {
    let slots: UnsafeMutablePointer<pk_id_slot>
    private let huge: HugePageBuffer?

    init(capacity: Int, hugePages: Bool) {
        let bytes = capacity * MemoryLayout<pk_id_slot>.stride
        if hugePages, let buffer = HugePageBuffer(count: bytes) {  // zero-filled
            huge = buffer
            slots = buffer.base.bindMemory(to: pk_id_slot.self, capacity: capacity)
        } else {
            huge = nil
            slots = .allocate(capacity: capacity)
            slots.initialize(repeating: pk_id_slot(key: 0, row1: 0, pad: 0), count: capacity)
        }
    }

    func seal() { huge?.seal() }

    deinit { if huge == nil { slots.deallocate() } }
}
