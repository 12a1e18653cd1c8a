/// The live catalog over a mapped base index (issue #15): items upserted and deleted since the
/// base was built, as one immutable value.
///
/// Why a value beside the base rather than edits to it: the base is a read-only mapping (or a
/// sealed huge-page copy) shared by every request in flight; a value swapped atomically per
/// change gives read-your-writes — a request keeps the delta it started with, and every request
/// that starts after the swap sees the change.
///
/// Resolution of a candidate id, in order:
///   1. a base row that is not hidden → served from the base (the common case: no delta lookup);
///   2. upserted (in `index`, the delta's own rows) → served from the delta (an upserted id the
///      base also holds has its base row hidden);
///   3. otherwise unknown (deleted, or never seen).
/// A whole-index request scores the base minus the hidden rows, plus every live delta row.
///
/// Storage: the delta rows live in an append-only `DeltaArena`, stored in the base's dtype (F16
/// rounding, I8 quantisation and rescore rows exactly as `build-index` would write them), so the
/// same C kernel scores them and an upserted item gets the bits it would get from a rebuilt
/// index. An override appends a new row and marks the old one stale (`stale`); a whole-index
/// scan skips stale rows like hidden base rows.
///
/// Cost of a change of b rows over a delta of M live items: O(b) row writes and base lookups,
/// a copy of the two bitmaps (N/8 and M/8 bytes) and a rebuild of the delta's id table (O(M)
/// 16-byte slot writes, ~1 ms per 100k items). Rows are copied only when the arena is full or a
/// change is applied to a value that is not the newest of its arena: live rows move to a fresh
/// arena of twice their count (amortised O(1) per row, and stale rows are dropped). Folding the
/// log into a new base (`build-index --updates`) keeps M small.
public struct ItemDelta: Sendable {
    /// The last update-log sequence number applied (0: none; the base's own sequence when
    /// nothing newer was applied).
    public let sequence: UInt64
    /// The live delta rows as served (nil when there are none); rows `[0, index.count)` of the
    /// arena, stale ones included (`isStale`), looked up through a table of the live ones.
    public let index: ItemIndex?
    /// Ids deleted and not upserted again since (only ids that were held when deleted).
    public let deletedIDs: Set<Int64>
    /// Bitmap over base rows: bit r set when base row r is deleted or overridden (empty: none).
    public let hidden: RowBitmap
    /// Base rows hidden.
    public let hiddenCount: Int
    /// Bitmap over delta rows: bit r set when row r was overridden or deleted since it was
    /// written (empty: none).
    public let stale: RowBitmap
    /// Delta rows stale.
    public let staleCount: Int

    private let arena: DeltaArena?
    /// Rows of `arena` this value sees (its appends go after them).
    private let rowCount: Int

    /// No changes over a base whose own `updates_sequence` is `sequence`.
    public init(sequence: UInt64 = 0) {
        self.init(sequence: sequence, index: nil, deletedIDs: [], hidden: RowBitmap(), hiddenCount: 0, stale: RowBitmap(), staleCount: 0,
                  arena: nil, rowCount: 0)
    }

    private init(sequence: UInt64, index: ItemIndex?, deletedIDs: Set<Int64>, hidden: RowBitmap, hiddenCount: Int,
                 stale: RowBitmap, staleCount: Int, arena: DeltaArena?, rowCount: Int) {
        self.sequence = sequence
        self.index = index
        self.deletedIDs = deletedIDs
        self.hidden = hidden
        self.hiddenCount = hiddenCount
        self.stale = stale
        self.staleCount = staleCount
        self.arena = arena
        self.rowCount = rowCount
    }

    /// Items the delta serves (upserted and not deleted or overridden since).
    public var upsertedCount: Int { rowCount - staleCount }

    /// True when nothing is upserted or deleted (the engine then takes its old path untouched).
    public var isEmpty: Bool { upsertedCount == 0 && deletedIDs.isEmpty }

    /// Items a whole-index request scores: base minus hidden plus upserted.
    public func itemCount(base: ItemIndex) -> Int { base.count - hiddenCount + upsertedCount }

    /// True when delta row `r` is no longer served (overridden or deleted).
    @inline(__always)
    public func isStale(_ r: Int32) -> Bool {
        stale.contains(r)
    }

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
        if baseRow >= 0, !hidden.contains(baseRow) {
            return .base(baseRow)
        }
        if let index {
            let r = index.row(of: id)
            if r >= 0 { return .delta(r) }
        }
        return .unknown
    }

    /// One change: `ids` with F32 rows `vectors` `[ids.count × T × d]` (from the model's item
    /// tower) replace or add items, then `deletes` hide ids.
    public struct Change: Sendable {
        public var ids: [Int64]
        public var vectors: [Float]
        public var deletes: [Int64]
        public var sequence: UInt64
        public init(ids: [Int64], vectors: [Float], deletes: [Int64], sequence: UInt64) {
            self.ids = ids
            self.vectors = vectors
            self.deletes = deletes
            self.sequence = sequence
        }
    }

    /// The delta after one change (see `applying(_:base:)`).
    public func applying(ids: [Int64], vectors: [Float], deletes: [Int64], sequence: UInt64, base: ItemIndex) -> ItemDelta {
        applying([Change(ids: ids, vectors: vectors, deletes: deletes, sequence: sequence)], base: base)
    }

    /// The delta after `changes`, in order (a replayed log applies many at once: the id table is
    /// built once). Within a change the upserts come first, then the deletes: an id both upserted
    /// and deleted in one change ends deleted (callers refuse such a change before it gets here);
    /// an id upserted twice keeps its last row.
    ///
    /// - parameter base: the index this delta is over (dtype, rescore rows, hidden rows).
    public func applying(_ changes: [Change], base: ItemIndex) -> ItemDelta {
        let t = base.taskCount, d = base.d, width = t * d
        for c in changes { precondition(c.vectors.count == c.ids.count * width, "vectors must be [n × T × d]") }
        guard let last = changes.last else { return self }
        let added = changes.reduce(0) { $0 + $1.ids.count }

        // Rows of this value keep their numbers when the arena has room and nothing appended past
        // them; otherwise the live rows move, compacted, to a fresh arena.
        var arena: DeltaArena
        var rows: Int
        var stale: RowBitmap
        var staleCount: Int
        /// id → current row for ids whose row differs from `index`'s table (-1: no row).
        var moved: [Int64: Int32] = [:]
        var useTable: Bool
        if let current = self.arena, current.claim(from: rowCount, count: added) {
            (arena, rows, stale, staleCount, useTable) = (current, rowCount, self.stale, self.staleCount, true)
        } else {
            let live = upsertedCount
            arena = DeltaArena(capacity: max(1024, 2 * (live + added)), taskCount: t, d: d, dtype: base.dtype,
                               rescore: base.rescore != nil)
            rows = 0
            if let old = self.arena {
                moved.reserveCapacity(live + added)
                for r in 0..<rowCount where !isStale(Int32(r)) {
                    arena.copyRow(r, of: old, to: rows)
                    moved[old.ids[r]] = Int32(rows)
                    rows += 1
                }
            }
            let claimed = arena.claim(from: 0, count: rows + added)
            precondition(claimed, "a fresh arena holds the live rows and the change")
            (stale, staleCount, useTable) = (RowBitmap(), 0, false)
        }
        let table = useTable ? index?.table : nil
        func row(of id: Int64) -> Int32 {
            if let r = moved[id] { return r }
            if let table { return table.row(of: id) }
            return -1
        }
        func markStale(_ r: Int32) {
            if stale.insert(r) { staleCount += 1 }
        }
        var hidden = self.hidden
        var hiddenCount = self.hiddenCount
        func hide(_ id: Int64) {
            let r = base.row(of: id)
            guard r >= 0 else { return }
            // Covers every base row: a whole-index scan reads it for each row it scans.
            if hidden.isUnallocated { hidden.cover(rows: base.count) }
            if hidden.insert(r) { hiddenCount += 1 }
        }
        var deleted = deletedIDs
        for change in changes {
            for (i, id) in change.ids.enumerated() {
                let old = row(of: id)
                if old >= 0 { markStale(old) }
                moved[id] = Int32(rows + i)
                if !deleted.isEmpty { deleted.remove(id) }
                hide(id)
            }
            change.ids.withUnsafeBufferPointer { ids in
                change.vectors.withUnsafeBufferPointer { arena.write(ids: ids, f32: $0.baseAddress!, at: rows) }
            }
            rows += change.ids.count
            for id in change.deletes {
                let old = row(of: id)
                // An id this value does not hold (never seen, or deleted already) changes
                // nothing: kept out of `deletedIDs`, so deletes of noise do not grow it.
                if old < 0 {
                    let b = base.row(of: id)
                    guard b >= 0, !hidden.contains(b) else { continue }
                }
                if old >= 0 { markStale(old) }
                moved[id] = -1
                deleted.insert(id)
                hide(id)
            }
        }
        if staleCount == 0 {
            stale = RowBitmap()
        } else {
            stale.cover(rows: rows)  // one bit per row
        }
        if hiddenCount == 0 { hidden = RowBitmap() }
        let liveRows = rows - staleCount
        var index: ItemIndex?
        if liveRows > 0 {
            let ids = UnsafeBufferPointer(start: UnsafePointer(arena.ids), count: rows)
            let staleBits = stale
            let table = IDTable(hashing: ids) { r in
                staleBits.contains(Int32(r))
            }
            index = ItemIndex(viewIDs: ids, vectors: UnsafeRawPointer(arena.vectors), scales: arena.scales.map { UnsafePointer($0) },
                              rescore: arena.rescore.map { UnsafeRawPointer($0) }, table: table, taskCount: t, d: d,
                              dtype: base.dtype, fingerprint: base.fingerprint, tasks: base.tasks, owner: arena)
        }
        return ItemDelta(sequence: last.sequence, index: index, deletedIDs: deleted, hidden: hidden, hiddenCount: hiddenCount,
                         stale: stale, staleCount: staleCount, arena: arena, rowCount: rows)
    }

    /// The F32 row `[T × d]` an upserted id is scored or rescored from (tests, inspection); nil
    /// for an id not upserted, and for F16/I8 rows without rescore (`index.vector(row:task:)`
    /// dequantises those).
    public func vector(of id: Int64) -> [Float]? {
        guard let index, let arena else { return nil }
        let r = index.row(of: id)
        guard r >= 0, let row = arena.f32Row(Int(r)) else { return nil }
        return Array(UnsafeBufferPointer(start: row, count: arena.width))
    }
}
