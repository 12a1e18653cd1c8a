import Fusion

/// Slots of delta rows in a top-K shared with base rows: `-1 - slot`, so the sign says which
/// table a kept candidate's row or position belongs to.
enum DeltaSlot {
    @inline(__always) static func isDelta(_ slot: Int32) -> Bool { slot < 0 }
    @inline(__always) static func untag(_ slot: Int32) -> Int32 { slot < 0 ? -1 - slot : slot }
    /// Pushes a delta scan's entries into `top` with their slots tagged.
    static func merge(_ part: TopK, into top: inout TopK) {
        for var e in part.sorted() {
            e.slot = -1 - e.slot
            top.push(e)
        }
    }
}
