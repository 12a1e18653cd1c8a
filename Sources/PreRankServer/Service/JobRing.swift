/// A FIFO in a growable ring buffer.
///
/// `popFirst` clears the slot it reads, so the queue holds no reference to an element once it
/// is handed out. The worker pool relies on this: a finished job's closure — and with it the
/// request body and the serving snapshot it captured — is released as soon as the job returns,
/// not when some later job happens to reuse or compact the storage.
struct JobRing<Element> {
    private var slots: [Element?]
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 16) {
        slots = Array(repeating: nil, count: max(1, capacity))
    }

    var isEmpty: Bool { count == 0 }

    /// The oldest element, still queued.
    var first: Element? { count == 0 ? nil : slots[head] }

    mutating func append(_ element: Element) {
        if count == slots.count { grow() }
        slots[(head + count) % slots.count] = element
        count += 1
    }

    /// Removes and returns the oldest element, leaving no reference to it behind.
    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = slots[head]
        slots[head] = nil
        head = (head + 1) % slots.count
        count -= 1
        return element
    }

    /// Doubles the storage, unrolling the ring so the oldest element is at index 0.
    private mutating func grow() {
        var bigger = [Element?](repeating: nil, count: slots.count * 2)
        for i in 0..<count { bigger[i] = slots[(head + i) % slots.count] }
        slots = bigger
        head = 0
    }
}
