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
    /// Per row, bit g set: embedded field g (record order) was routed to its OOV row for this
    /// step (id dropout, or ids off during warm start). Empty: none was.
    var dropped: [UInt64] = []
    /// Per row, its loss weight (`--weight-column`). Empty: every row weighs 1.
    var weights: [Float] = []
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
    /// Per embedded field in record order: bucket → table row (Admission); empty = identity.
    let rowOf: [[UInt32]]
    /// Per embedded field in record order: the OOV row's index (= buckets).
    let oovRow: [UInt32]
    /// Records carry a weight word after the labels (`TrainingRowReader.weightColumn`).
    let weighted: Bool

    init(spec: ModelSpec, denseMean: [Side: [Float]], denseStd: [Side: [Float]], admission: Admission? = nil, weighted: Bool = false) {
        self.weighted = weighted
        user = SideLayout(side: .user, spec: spec)
        item = SideLayout(side: .item, spec: spec)
        tasks = spec.tasks.count
        self.denseMean = denseMean
        self.denseStd = denseStd
        let embedded = user.embeddings + item.embeddings
        rowOf = admission?.fields.map(\.rowOf) ?? embedded.map { _ in [] }
        oovRow = embedded.map { UInt32($0.buckets) }
        precondition(embedded.count <= 64, "at most 64 categorical/multi fields (dropout mask)")
    }

    /// Index of a side's first embedded field in record order.
    private func firstField(_ side: Side) -> Int { side == .user ? 0 : user.embeddings.count }

    /// Word offsets inside a record: where each side's dense values and embedding fields start.
    private var denseStart: (user: Int, item: Int) { (headerWords, headerWords + user.dense.count) }
    private var embeddingStart: Int { headerWords + user.dense.count + item.dense.count }
    /// Labels, and the weight when there is one.
    private var headerWords: Int { weighted ? 2 : 1 }

    /// - parameter dropped: per row, the embedded fields read from their OOV row (`Batch.dropped`).
    /// - parameter withWeights: fill `Batch.weights` from the records (when they carry weights).
    func assemble(_ rows: [Int], from data: EncodedRows, embeddings: [String: [Float]], dropped: [UInt64] = [],
                  withWeights: Bool = true) -> Batch {
        let b = rows.count
        var batch = Batch(rows: rows, xu: [Float](repeating: 0, count: b * user.width),
                          xi: [Float](repeating: 0, count: b * item.width),
                          labels: [Float](repeating: 0, count: b * tasks), dropped: dropped)
        if weighted && withWeights { batch.weights = rows.map { Float(bitPattern: data.record($0)[1]) } }
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
                        let mask = dropped.isEmpty ? 0 : dropped[i]
                        p = gatherEmbeddings(user, tables: userTables, p, mask: mask, into: xuRow)
                        _ = gatherEmbeddings(item, tables: itemTables, p, mask: mask, into: xiRow)
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
    /// Admitted buckets read their own row, the others the OOV row; a dropped field reads the OOV
    /// row once (a missing value stays zeros either way).
    private func gatherEmbeddings(_ side: SideLayout, tables: [[Float]], _ start: UnsafePointer<UInt32>, mask: UInt64,
                                  into x: UnsafeMutablePointer<Float>) -> UnsafePointer<UInt32> {
        var p = start
        let first = firstField(side.side)
        for (f, field) in side.embeddings.enumerated() {
            let n = Int(p[0]), g = first + f
            let ids = UnsafeBufferPointer(start: p + 1, count: n)
            tables[f].withUnsafeBufferPointer { table in
                if n > 0 && mask & (1 << UInt64(g)) != 0 {
                    FeatureEncoder.addMean(of: CollectionOfOne(oovRow[g]), table: table, dim: field.dim, into: x + field.offset)
                } else if rowOf[g].isEmpty {
                    FeatureEncoder.addMean(of: ids, table: table, dim: field.dim, into: x + field.offset)
                } else {
                    rowOf[g].withUnsafeBufferPointer { map in
                        FeatureEncoder.addMean(of: ids.lazy.map { map[Int($0)] }, table: table, dim: field.dim, into: x + field.offset)
                    }
                }
            }
            p += 1 + n
        }
        return p
    }

    /// Scatters one side's dL/dx (`gx` `[B × width]`) onto the embedding rows that fed the batch
    /// (through the same admission map and dropout mask as `assemble`); a multi value's rows share
    /// its block's gradient equally (the block is their mean). Rows of weight 0 touch nothing.
    /// `tables[f]` follows `SideLayout.embeddings`.
    func scatter(_ batch: Batch, side: Side, from data: EncodedRows, gx: [Float], into tables: inout [SparseTableGradient]) {
        let layout = side == .user ? user : item
        gx.withUnsafeBufferPointer { g in
            for (i, r) in batch.rows.enumerated() {
                // A row of weight 0 is as if absent: it must not touch (and so decay) the rows it reads.
                if !batch.weights.isEmpty && batch.weights[i] == 0 { continue }
                var p = data.record(r) + embeddingStart
                if side == .item {  // skip the user side's fields
                    for _ in user.embeddings { p += 1 + Int(p[0]) }
                }
                let row = g.baseAddress! + i * layout.width
                let mask = batch.dropped.isEmpty ? 0 : batch.dropped[i]
                let first = firstField(side)
                for (f, field) in layout.embeddings.enumerated() {
                    let n = Int(p[0]), gf = first + f
                    if n > 0 && mask & (1 << UInt64(gf)) != 0 {
                        tables[f].add(bucket: Int(oovRow[gf]), share: 1, row + field.offset)
                    } else {
                        let share = 1 / Float(max(n, 1))
                        let map = rowOf[gf]
                        for j in 0..<n {
                            let bucket = Int(p[1 + j])
                            tables[f].add(bucket: map.isEmpty ? bucket : Int(map[bucket]), share: share, row + field.offset)
                        }
                    }
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
