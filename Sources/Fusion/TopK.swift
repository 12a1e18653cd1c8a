/// One ranked entry: the fused score, the item id, and the caller's slot (where its per-task
/// probabilities are kept).
public struct Ranked: Sendable, Equatable {
    public var score: Double
    public var id: Int64
    public var slot: Int32

    public init(score: Double, id: Int64, slot: Int32) {
        self.score = score
        self.id = id
        self.slot = slot
    }

    /// Ranking order: higher score first, ties by id ascending. NaN ranks last.
    @inlinable
    public func ranksBefore(_ other: Ranked) -> Bool {
        let a = score.isNaN ? -Double.infinity : score
        let b = other.score.isNaN ? -Double.infinity : other.score
        return a > b || (a == b && id < other.id)
    }
}

/// Keeps the best `k` of a stream without sorting it all: a binary min-heap of size k whose
/// root is the current worst kept entry. O(n log k); `k ≪ n` in pre-rank (100 of 10k–1M).
public struct TopK: Sendable {
    public let k: Int
    @usableFromInline var heap: [Ranked]

    public init(k: Int) {
        precondition(k >= 1)
        self.k = k
        heap = []
        heap.reserveCapacity(k)
    }

    public var count: Int { heap.count }

    /// The entry an arrival must beat to be kept, once full.
    public var threshold: Ranked? { heap.count == k ? heap[0] : nil }

    @inlinable
    public mutating func push(_ e: Ranked) {
        if heap.count < k {
            heap.append(e)
            siftUp(heap.count - 1)
        } else if e.ranksBefore(heap[0]) {
            heap[0] = e
            siftDown(0)
        }
    }

    /// Merges another selector (per-thread partial results).
    public mutating func merge(_ other: TopK) {
        for e in other.heap { push(e) }
    }

    /// The kept entries, best first.
    public func sorted() -> [Ranked] {
        heap.sorted { $0.ranksBefore($1) }
    }

    // Heap order: parent is "worse" (ranks after) than its children.
    @usableFromInline
    mutating func siftUp(_ index: Int) {
        var i = index
        while i > 0 {
            let p = (i - 1) / 2
            guard heap[p].ranksBefore(heap[i]) else { break }
            heap.swapAt(p, i)
            i = p
        }
    }

    @usableFromInline
    mutating func siftDown(_ index: Int) {
        var i = index
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var worst = i
            if l < n && heap[worst].ranksBefore(heap[l]) { worst = l }
            if r < n && heap[worst].ranksBefore(heap[r]) { worst = r }
            if worst == i { return }
            heap.swapAt(i, worst)
            i = worst
        }
    }
}
