import Foundation

/// Append-only row storage behind the `ItemDelta` values of one lineage of changes.
///
/// Layout, per row r in `[0, capacity)` (each table 64-byte aligned, allocated once; pages are
/// committed by the kernel as rows are written):
///   ids      `[capacity]` Int64
///   vectors  `[capacity × T × d]` in the base index's dtype (F32, F16, or I8)
///   scales   `[capacity × T]` F32, I8 only (value = int8 · scale, `Quantization.int8`)
///   rescore  `[capacity × T × d]` F32, only over a base with rescore rows
/// A compaction or a fork copies the stored bits as they are; no F32 copy is kept beside F16/I8
/// rows without rescore (it would be 4× an I8 row of memory for nothing the server reads).
///
/// Why append-only: a change writes only its own rows, past every row a published `ItemDelta`
/// can see, so requests in flight read rows `[0, rowCount)` of their value while the next
/// change writes `[rowCount, …)`: no copy of the existing rows per change (the earlier design
/// rebuilt the whole delta per change: O(delta) bytes copied, ~40 ms per change at 50k items).
///
/// Only the newest value of a lineage may append (`claim`): a change applied to an older value
/// (or to one of two values sharing the arena) gets a fresh arena with that value's live rows,
/// so every `ItemDelta` stays a value.
final class DeltaArena: @unchecked Sendable {
    let capacity: Int
    let taskCount: Int
    let d: Int
    let dtype: IndexDType
    let hasRescore: Bool

    let ids: UnsafeMutablePointer<Int64>
    let vectors: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<Float>?
    let rescore: UnsafeMutablePointer<Float>?

    /// Rows handed out; guarded by `lock` (changes are serialised by their caller, but two
    /// values of a lineage may be applied to from different places, e.g. tests).
    private var claimed = 0
    private let lock = NSLock()

    var width: Int { taskCount * d }

    init(capacity: Int, taskCount: Int, d: Int, dtype: IndexDType, rescore: Bool) {
        self.capacity = capacity
        self.taskCount = taskCount
        self.d = d
        self.dtype = dtype
        self.hasRescore = rescore && dtype != .f32
        let w = taskCount * d
        ids = .allocate(capacity: max(capacity, 1))
        vectors = .allocate(byteCount: max(capacity * w * dtype.bytesPerValue, 1), alignment: 64)
        scales = dtype == .i8 ? .allocate(capacity: max(capacity * taskCount, 1)) : nil
        self.rescore = hasRescore ? .allocate(capacity: max(capacity * w, 1)) : nil
    }

    deinit {
        ids.deallocate()
        vectors.deallocate()
        scales?.deallocate()
        rescore?.deallocate()
    }

    /// Reserves rows `[from, from + count)` for the value that has seen exactly `from` rows.
    /// False when another value appended past `from` already, or the rows do not fit.
    func claim(from: Int, count: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard claimed == from, from + count <= capacity else { return false }
        claimed = from + count
        return true
    }

    /// The F32 row `[T × d]` of row `r` (from `vectors` or `rescore`), nil for F16/I8 rows
    /// without rescore.
    func f32Row(_ r: Int) -> UnsafePointer<Float>? {
        let w = width
        if dtype == .f32 { return UnsafePointer(vectors.assumingMemoryBound(to: Float.self) + r * w) }
        return rescore.map { UnsafePointer($0 + r * w) }
    }

    /// Writes `count` rows starting at row `at` from F32 rows `[count × T × d]`, stored exactly
    /// as `IndexBuilder.write` stores them (F16 rounding, per-(row, task) int8 scales).
    func write(ids newIDs: UnsafeBufferPointer<Int64>, f32 rows: UnsafePointer<Float>, at: Int) {
        let count = newIDs.count, w = width
        guard count > 0 else { return }
        (ids + at).update(from: newIDs.baseAddress!, count: count)
        switch dtype {
        case .f32:
            (vectors.assumingMemoryBound(to: Float.self) + at * w).update(from: rows, count: count * w)
        case .f16:
            let out = vectors.assumingMemoryBound(to: Float16.self) + at * w
            for i in 0..<(count * w) { out[i] = Float16(rows[i]) }
        case .i8:
            let (q, s) = Quantization.int8(Array(UnsafeBufferPointer(start: rows, count: count * w)), rows: count * taskCount, width: d)
            q.withUnsafeBytes { (vectors + at * w).copyMemory(from: $0.baseAddress!, byteCount: count * w) }
            (scales! + at * taskCount).update(from: s, count: count * taskCount)
        }
        if let rescore { (rescore + at * w).update(from: rows, count: count * w) }
    }

    /// Copies row `r` of `other` (same shape and dtype) to row `at`: stored bits as they are.
    func copyRow(_ r: Int, of other: DeltaArena, to at: Int) {
        let w = width, b = dtype.bytesPerValue
        ids[at] = other.ids[r]
        (vectors + at * w * b).copyMemory(from: other.vectors + r * w * b, byteCount: w * b)
        if let s = scales { (s + at * taskCount).update(from: other.scales! + r * taskCount, count: taskCount) }
        if let rescore { (rescore + at * w).update(from: other.rescore! + r * w, count: w) }
    }
}
