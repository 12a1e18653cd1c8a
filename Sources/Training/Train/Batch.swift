import TwinTower

/// A mini-batch ready for the towers: both sides' inputs gathered from the current embedding
/// tables, and the labels.
///
/// Shapes: `xu` `[B × width(user)]`, `xi` `[B × width(item)]`, `labels` `[B × T]`, row-major.
struct Batch {
    var rows: [Int]
    var xu: [Float]
    var xi: [Float]
    var labels: [Float]
    var count: Int { rows.count }
}

/// Gathers batches from encoded rows (SPEC §1's encoding: an embedding row per categorical
/// value, the mean of the rows of a multi value, `(v − mean) / std` for dense values, zeros for
/// missing ones) and scatters the gradient of `x` back onto the embedding rows that fed it.
struct BatchAssembler {
    let user: SideLayout
    let item: SideLayout
    let tasks: Int
    let denseMean: [Side: [Float]]
    let denseStd: [Side: [Float]]

    init(spec: ModelSpec, denseMean: [Side: [Float]], denseStd: [Side: [Float]]) {
        user = SideLayout(side: .user, spec: spec)
        item = SideLayout(side: .item, spec: spec)
        tasks = spec.tasks.count
        self.denseMean = denseMean
        self.denseStd = denseStd
    }

    /// Word offsets inside a record: where each side's dense values and embedding fields start.
    private var denseStart: (user: Int, item: Int) { (1, 1 + user.dense.count) }
    private var embeddingStart: Int { 1 + user.dense.count + item.dense.count }

    func assemble(_ rows: [Int], from data: EncodedRows, embeddings: [String: [Float]]) -> Batch {
        let b = rows.count
        var batch = Batch(rows: rows, xu: [Float](repeating: 0, count: b * user.width),
                          xi: [Float](repeating: 0, count: b * item.width),
                          labels: [Float](repeating: 0, count: b * tasks))
        let userTables = user.embeddings.map { embeddings[$0.name] ?? [] }
        let itemTables = item.embeddings.map { embeddings[$0.name] ?? [] }
        let (du, di) = denseStart
        batch.xu.withUnsafeMutableBufferPointer { xu in
            batch.xi.withUnsafeMutableBufferPointer { xi in
                batch.labels.withUnsafeMutableBufferPointer { labels in
                    for (i, r) in rows.enumerated() {
                        let rec = data.record(r)
                        for k in 0..<tasks { labels[i * tasks + k] = rec[0] & (1 << UInt32(k)) != 0 ? 1 : 0 }
                        let xuRow = xu.baseAddress! + i * user.width, xiRow = xi.baseAddress! + i * item.width
                        gatherDense(user, rec + du, into: xuRow)
                        gatherDense(item, rec + di, into: xiRow)
                        var p = rec + embeddingStart
                        p = gatherEmbeddings(user, tables: userTables, p, into: xuRow)
                        _ = gatherEmbeddings(item, tables: itemTables, p, into: xiRow)
                    }
                }
            }
        }
        return batch
    }

    private func gatherDense(_ side: SideLayout, _ values: UnsafePointer<UInt32>, into x: UnsafeMutablePointer<Float>) {
        let mean = denseMean[side.side] ?? [], std = denseStd[side.side] ?? []
        for (j, field) in side.dense.enumerated() {
            x[field.offset] = FeatureEncoder.normalise(Float(bitPattern: values[j]), mean: mean[j], std: std[j])
        }
    }

    /// Adds each field's (mean) embedding row into `x`; returns the pointer past the side's fields.
    private func gatherEmbeddings(_ side: SideLayout, tables: [[Float]], _ start: UnsafePointer<UInt32>,
                                  into x: UnsafeMutablePointer<Float>) -> UnsafePointer<UInt32> {
        var p = start
        for (f, field) in side.embeddings.enumerated() {
            let n = Int(p[0])
            tables[f].withUnsafeBufferPointer {
                FeatureEncoder.addMean(of: UnsafeBufferPointer(start: p + 1, count: n), table: $0, dim: field.dim, into: x + field.offset)
            }
            p += 1 + n
        }
        return p
    }

    /// Scatters one side's dL/dx (`gx` `[B × width]`) onto the embedding rows that fed the batch;
    /// a multi value's rows share its block's gradient equally (the block is their mean).
    /// `tables[f]` follows `SideLayout.embeddings`.
    func scatter(_ batch: Batch, side: Side, from data: EncodedRows, gx: [Float], into tables: inout [SparseTableGradient]) {
        let layout = side == .user ? user : item
        gx.withUnsafeBufferPointer { g in
            for (i, r) in batch.rows.enumerated() {
                var p = data.record(r) + embeddingStart
                if side == .item {  // skip the user side's fields
                    for _ in user.embeddings { p += 1 + Int(p[0]) }
                }
                let row = g.baseAddress! + i * layout.width
                for (f, field) in layout.embeddings.enumerated() {
                    let n = Int(p[0])
                    let share = 1 / Float(max(n, 1))
                    for j in 0..<n { tables[f].add(bucket: Int(p[1 + j]), share: share, row + field.offset) }
                    p += 1 + n
                }
            }
        }
    }
}

/// The gradient of one embedding table over a batch, on the rows the batch touched only.
///
/// `slot` maps a bucket to its row in `grads` (−1: untouched), so accumulation is an array
/// lookup rather than a dictionary per row; it is reset after each step by walking `touched`.
struct SparseTableGradient {
    let dim: Int
    private var slot: [Int32]
    private(set) var touched: [Int32] = []
    /// `[touched.count × dim]`.
    private(set) var grads: [Float] = []

    init(buckets: Int, dim: Int) {
        self.dim = dim
        slot = [Int32](repeating: -1, count: buckets)
    }

    /// `grads[bucket] += share · g[0..<dim]`.
    mutating func add(bucket: Int, share: Float, _ g: UnsafePointer<Float>) {
        var s = Int(slot[bucket])
        if s < 0 {
            s = touched.count
            slot[bucket] = Int32(s)
            touched.append(Int32(bucket))
            grads.append(contentsOf: repeatElement(0, count: dim))
        }
        grads.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress! + s * dim
            for j in 0..<dim { o[j] += share * g[j] }
        }
    }

    mutating func reset() {
        for b in touched { slot[Int(b)] = -1 }
        touched.removeAll(keepingCapacity: true)
        grads.removeAll(keepingCapacity: true)
    }
}
