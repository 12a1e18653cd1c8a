/// The live catalog over a mapped base index (issue #15): items upserted and deleted since the
/// base was built, as one immutable value.
///
/// Why a value beside the base rather than edits to it: the base is a read-only mapping (or a
/// sealed huge-page copy) shared by every request in flight; a value that is rebuilt per change
/// and swapped atomically gives copy-on-write for free. A request keeps the delta it started
/// with, and every request that starts after the swap sees the change (read-your-writes).
///
/// Resolution of a candidate id, in order:
///   1. upserted (in `index`, the delta's own rows) → served from the delta, even if the base
///      also holds it (the base row is hidden);
///   2. deleted → unknown, even if the base holds it;
///   3. otherwise the base row, if any.
/// A whole-index request scores the base minus the hidden rows, plus every delta row.
///
/// The delta rows are a small in-memory `ItemIndex` stored in the base's dtype (F16 rounding,
/// I8 quantisation and rescore rows exactly as `build-index` would write them), so the same C
/// kernel scores them and an upserted item gets the bits it would get from a rebuilt index.
///
/// Cost: each change rebuilds the value (O(delta items + deleted ids) plus the hidden-row
/// bitmap of N/8 bytes); fine while the delta is small next to the base, which is what folding
/// the log into a new base (`build-index --updates`) keeps it.
public struct ItemDelta: Sendable {
    /// The last update-log sequence number applied (0: none; the base's own sequence when
    /// nothing newer was applied).
    public let sequence: UInt64
    /// Upserted ids, ascending, and their F32 rows `[M × T × d]` (kept to rebuild the next value:
    /// quantised rows cannot be turned back into F32 exactly).
    public let upsertIDs: [Int64]
    let upsertVectors: [Float]
    /// The upserted rows as served (nil when there are none).
    public let index: ItemIndex?
    /// Ids deleted and not upserted again since.
    public let deletedIDs: Set<Int64>
    /// Bitmap over base rows: bit r set when base row r is deleted or overridden (empty: none).
    public let hidden: [UInt64]
    /// Base rows hidden.
    public let hiddenCount: Int

    /// No changes over a base whose own `updates_sequence` is `sequence`.
    public init(sequence: UInt64 = 0) {
        self.sequence = sequence
        upsertIDs = []
        upsertVectors = []
        index = nil
        deletedIDs = []
        hidden = []
        hiddenCount = 0
    }

    init(sequence: UInt64, upsertIDs: [Int64], upsertVectors: [Float], index: ItemIndex?, deletedIDs: Set<Int64>,
         hidden: [UInt64], hiddenCount: Int) {
        self.sequence = sequence
        self.upsertIDs = upsertIDs
        self.upsertVectors = upsertVectors
        self.index = index
        self.deletedIDs = deletedIDs
        self.hidden = hidden
        self.hiddenCount = hiddenCount
    }

    /// True when nothing is upserted or deleted (the engine then takes its old path untouched).
    public var isEmpty: Bool { upsertIDs.isEmpty && deletedIDs.isEmpty }

    /// Items a whole-index request scores: base minus hidden plus upserted.
    public func itemCount(base: ItemIndex) -> Int { base.count - hiddenCount + upsertIDs.count }

    /// Where a candidate id is served from.
    public enum Resolution: Sendable, Equatable {
        case base(Int32)
        case delta(Int32)
        case unknown
    }

    /// Resolves one id (the engine resolves whole candidate lists with `IDTable.rows` first and
    /// then `refine`; this is the same rule for tools and tests).
    public func resolve(_ id: Int64, base: ItemIndex) -> Resolution {
        refine(id, baseRow: base.row(of: id))
    }

    /// The resolution of `id` given its base row (-1 when the base does not hold it).
    @inline(__always)
    public func refine(_ id: Int64, baseRow: Int32) -> Resolution {
        if let index {
            let r = index.row(of: id)
            if r >= 0 { return .delta(r) }
        }
        if baseRow < 0 { return .unknown }
        if !hidden.isEmpty, hidden[Int(baseRow) >> 6] & (UInt64(1) << UInt64(baseRow & 63)) != 0 { return .unknown }
        return .base(baseRow)
    }

    /// The delta after one change: `upserts` (ids with F32 rows `[T × d]` each, from the
    /// model's item tower) replace or add items, then `deletes` hide ids. An id both upserted and
    /// deleted in one change ends deleted (callers refuse such a change before it gets here).
    ///
    /// - parameters:
    ///   - vectors: `[upserts.count × T × d]` F32, row i for `ids[i]`.
    ///   - base: the index this delta is over (dtype, rescore rows, hidden rows).
    public func applying(ids: [Int64], vectors: [Float], deletes: [Int64], sequence: UInt64, base: ItemIndex) -> ItemDelta {
        let width = base.taskCount * base.d
        precondition(vectors.count == ids.count * width, "vectors must be [n × T × d]")
        // id → (source, row): source 0 the current delta, 1 this change.
        var rows: [Int64: (Int, Int)] = Dictionary(minimumCapacity: upsertIDs.count + ids.count)
        for (i, id) in upsertIDs.enumerated() { rows[id] = (0, i) }
        var deleted = deletedIDs
        for (i, id) in ids.enumerated() {
            rows[id] = (1, i)
            deleted.remove(id)
        }
        for id in deletes {
            rows[id] = nil
            deleted.insert(id)
        }
        let newIDs = rows.keys.sorted()
        var newVectors = [Float](repeating: 0, count: newIDs.count * width)
        newVectors.withUnsafeMutableBufferPointer { out in
            for (dst, id) in newIDs.enumerated() {
                let (source, src) = rows[id]!
                let from = source == 0 ? upsertVectors : vectors
                from.withUnsafeBufferPointer { f in
                    (out.baseAddress! + dst * width).update(from: f.baseAddress! + src * width, count: width)
                }
            }
        }
        let index = newIDs.isEmpty ? nil
            : ItemIndex(memoryIDs: newIDs, vectors: newVectors, taskCount: base.taskCount, d: base.d, dtype: base.dtype,
                        rescore: base.rescore != nil, fingerprint: base.fingerprint, tasks: base.tasks)
        var hidden: [UInt64] = []
        var hiddenCount = 0
        if !newIDs.isEmpty || !deleted.isEmpty {
            hidden = [UInt64](repeating: 0, count: (base.count + 63) / 64)
            for id in newIDs + Array(deleted) {
                let r = base.row(of: id)
                guard r >= 0 else { continue }
                let w = Int(r) >> 6, bit = UInt64(1) << UInt64(r & 63)
                if hidden[w] & bit == 0 { hidden[w] |= bit; hiddenCount += 1 }
            }
            if hiddenCount == 0 { hidden = [] }
        }
        return ItemDelta(sequence: sequence, upsertIDs: newIDs, upsertVectors: newVectors, index: index, deletedIDs: deleted,
                         hidden: hidden, hiddenCount: hiddenCount)
    }

    /// The F32 row `[T × d]` of an upserted id (tests, inspection).
    public func vector(of id: Int64, width: Int) -> [Float]? {
        guard let i = binarySearch(id) else { return nil }
        return Array(upsertVectors[(i * width)..<((i + 1) * width)])
    }

    private func binarySearch(_ id: Int64) -> Int? {
        var lo = 0, hi = upsertIDs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if upsertIDs[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < upsertIDs.count && upsertIDs[lo] == id ? lo : nil
    }
}
