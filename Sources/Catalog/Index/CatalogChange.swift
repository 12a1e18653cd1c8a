import TwinTower

/// One change to the live catalog (a `POST /admin/items` body, one update-log record): item rows
/// to upsert, ids to delete, and the sequence number the log gave it.
///
/// Rows are raw item-side features, not vectors: the log is replayed through whatever item
/// towers are loaded (primary and canary, and the next model after a reload), and folded into a
/// new base by `build-index --updates` with the model it builds for.
public struct CatalogChange: Sendable {
    public struct Upsert: Sendable {
        public var id: Int64
        /// The item's fields, `item_id` included (it may itself be a feature of the model).
        public var row: FeatureRow
        public init(id: Int64, row: FeatureRow) {
            self.id = id
            self.row = row
        }
    }

    public var sequence: UInt64
    public var upserts: [Upsert]
    public var deletes: [Int64]

    public init(sequence: UInt64 = 0, upserts: [Upsert], deletes: [Int64]) {
        self.sequence = sequence
        self.upserts = upserts
        self.deletes = deletes
    }
}

/// Item rows through a model's item towers, as `build-index` runs them.
public enum ItemVectors {
    /// F32 rows `[rows.count × T × d]`: each row encoded (errors name `FeatureRow.path`, e.g.
    /// `upsert[3].price`) and run through the Double-precision towers `IndexBuilder.batch` at a
    /// time, like `build-index`.
    public static func embed(_ rows: [FeatureRow], encoder: FeatureEncoder, tower: PreciseTower) throws(FeatureError) -> [Float] {
        let width = max(encoder.width, 1)
        var out: [Float] = []
        out.reserveCapacity(rows.count * tower.taskCount * tower.outputWidth)
        var x = [Float](repeating: 0, count: min(rows.count, IndexBuilder.batch) * width)
        var start = 0
        while start < rows.count {
            let n = min(IndexBuilder.batch, rows.count - start)
            for i in 0..<n {
                try x.withUnsafeMutableBufferPointer { (buf) throws(FeatureError) in
                    let slice = UnsafeMutableBufferPointer(rebasing: buf[(i * width)..<(i * width + encoder.width)])
                    try encoder.encode(rows[start + i], into: slice)
                }
            }
            out.append(contentsOf: x.withUnsafeBufferPointer { tower.embedBatch($0, batch: n) })
            start += n
        }
        return out
    }
}
