import Foundation
import TwinTower

/// `prerank build-index`: runs the item towers over a catalog and writes the item index.
public enum IndexBuilder {
    public struct Summary: Sendable {
        public var items: Int
        public var dtype: IndexDType
        public var bytes: Int
        /// Item-side fields the catalog has no column for (encoded as missing).
        public var missingColumns: [String]
    }

    /// Items are pushed through the item towers this many at a time (one sgemm per block).
    public static let batch = 1024

    /// - parameters:
    ///   - progress: called with the number of items encoded so far, about every batch.
    ///   - rescore: also write the F32 rows as tensor `rescore` (F16/I8 only), so the server can
    ///     rescore the best candidates of a quantised scan exactly.
    ///   - changes: update-log records folded over the catalog in order (`build-index --updates`):
    ///     an upserted item replaces or joins the catalog's, a deleted one leaves; the last
    ///     sequence is written as metadata `updates_sequence`, so a server reloading onto this
    ///     index skips the records it already holds.
    public static func build(model: Model, catalog: String, dtype: IndexDType, output: String, rescore: Bool = false,
                             changes: [CatalogChange] = [], progress: ((Int) -> Void)? = nil) throws(FormatError) -> Summary {
        var reader = try CSVReader(path: catalog)
        let columns = reader.columns
        guard let idColumn = columns["item_id"] else { throw FormatError(catalog, "no item_id column in the header") }
        let encoder = model.encoder(.item)
        let fields = encoder.fields.map { ($0.spec, columns[$0.spec.name]) }
        let missing = fields.filter { $0.1 == nil }.map(\.0.name)

        let t = model.spec.tasks.count, d = model.d
        let tower = model.itemTower.precise
        var ids: [Int64] = []
        var lines: [Int] = []
        var vectors: [Float] = []
        var x = [Float](repeating: 0, count: batch * max(encoder.width, 1))
        var pending = 0

        func flush() {
            guard pending > 0 else { return }
            vectors.append(contentsOf: x.withUnsafeBufferPointer { tower.embedBatch($0, batch: pending) })
            pending = 0
            progress?(ids.count)
        }

        while let cells = try reader.next() {
            let line = reader.line
            guard cells.count == reader.header.count else {
                throw FormatError(catalog, "line \(line): \(cells.count) columns, header has \(reader.header.count)")
            }
            guard let id = CSVFeatures.int64(cells[idColumn]) else {
                throw FormatError(catalog, "line \(line): item_id \"\(cells[idColumn])\" is not an integer")
            }
            var row = FeatureRow()
            for (spec, column) in fields {
                guard let column else { continue }
                do {
                    row[spec.name] = try CSVFeatures.value(cells[column], kind: spec.kind, column: spec.name, line: line)
                } catch {
                    throw FormatError(catalog, "line \(line): \(error.message) (column \(spec.name))")
                }
            }
            do {
                try x.withUnsafeMutableBufferPointer { (buf) throws(FeatureError) in
                    let slice = UnsafeMutableBufferPointer(rebasing: buf[(pending * encoder.width)..<((pending + 1) * encoder.width)])
                    try encoder.encode(row, into: slice)
                }
            } catch {
                throw FormatError(catalog, "line \(line): \(error.description)")
            }
            ids.append(id)
            lines.append(line)
            pending += 1
            if pending == batch { flush() }
        }
        flush()
        guard !ids.isEmpty else { throw FormatError(catalog, "the catalog holds no items") }

        // Ascending ids; a duplicate is an error that names both lines.
        var order = ids.indices.sorted { ids[$0] < ids[$1] }
        for i in 1..<order.count where ids[order[i]] == ids[order[i - 1]] {
            let a = lines[order[i - 1]], b = lines[order[i]]
            throw FormatError(catalog, "duplicate item_id \(ids[order[i]]) at lines \(min(a, b)) and \(max(a, b))")
        }
        let rowWidth = t * d
        var metadata: [String: String] = [:]
        if !changes.isEmpty {
            // The catalog's last word on each id is the log's: fold the changes in order.
            var upserted: [Int64: FeatureRow] = [:]
            var deleted = Set<Int64>()
            for change in changes {
                for u in change.upserts { upserted[u.id] = u.row; deleted.remove(u.id) }
                for id in change.deletes { upserted[id] = nil; deleted.insert(id) }
            }
            let newIDs = upserted.keys.sorted()
            let newVectors: [Float]
            do {
                newVectors = try ItemVectors.embed(newIDs.map { upserted[$0]! }, encoder: encoder, tower: tower)
            } catch {
                throw FormatError(catalog, "update log: \(error.description)")
            }
            order = order.filter { upserted[ids[$0]] == nil && !deleted.contains(ids[$0]) }
            let first = ids.count
            ids.append(contentsOf: newIDs)
            vectors.append(contentsOf: newVectors)
            order.append(contentsOf: first..<ids.count)
            order.sort { ids[$0] < ids[$1] }
            guard !order.isEmpty else { throw FormatError(catalog, "the catalog with the update log folded in holds no items") }
            metadata["updates_sequence"] = String(changes.map(\.sequence).max() ?? 0)
        }
        let sortedIDs = order.map { ids[$0] }
        var sorted = [Float](repeating: 0, count: order.count * rowWidth)
        for (dst, src) in order.enumerated() {
            for j in 0..<rowWidth { sorted[dst * rowWidth + j] = vectors[src * rowWidth + j] }
        }
        vectors = []
        return try write(ids: sortedIDs, vectors: sorted, taskNames: model.taskNames, d: d, dtype: dtype,
                         fingerprint: model.fingerprint, modelVersion: model.spec.version, output: output, rescore: rescore,
                         missing: missing, metadata: metadata)
    }

    /// Writes an index from already computed item vectors (`[N × T × d]`, ids ascending).
    /// `metadata` adds keys to `__metadata__` (`updates_sequence`).
    public static func write(ids: [Int64], vectors: [Float], taskNames: [String], d: Int, dtype: IndexDType,
                             fingerprint: String, modelVersion: String, output: String, rescore: Bool = false,
                             missing: [String] = [], metadata extra: [String: String] = [:]) throws(FormatError) -> Summary {
        let n = ids.count, t = taskNames.count
        guard !rescore || dtype != .f32 else {
            throw FormatError(output, "rescore rows go beside F16 or I8 vectors; an F32 index is already exact")
        }
        var entries = [TensorEntry("ids", shape: [n], .i64(ids))]
        switch dtype {
        case .f32:
            entries.append(TensorEntry("vectors", shape: [n, t, d], .f32(vectors)))
        case .f16:
            entries.append(TensorEntry("vectors", shape: [n, t, d], .f16(vectors.map { Float16($0) })))
        case .i8:
            let (q, scales) = Quantization.int8(vectors, rows: n * t, width: d)
            entries.append(TensorEntry("vectors", shape: [n, t, d], .i8(q)))
            entries.append(TensorEntry("scales", shape: [n, t], .f32(scales)))
        }
        if rescore { entries.append(TensorEntry("rescore", shape: [n, t, d], .f32(vectors))) }
        let tasksJSON = "[" + taskNames.map { JSONString.quote($0) }.joined(separator: ",") + "]"
        let formatter = ISO8601DateFormatter()
        let metadata = extra.merging([
            "format": "prerank-index/1",
            "model_fingerprint": fingerprint,
            "model_version": modelVersion,
            "tasks": tasksJSON,
            "dtype": dtype.rawValue,
            "rescore": rescore ? "f32" : "none",
            "d": String(d),
            "created_at": formatter.string(from: Date()),
        ]) { _, mine in mine }
        try SafetensorsWriter.write(entries, metadata: metadata, to: output)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return Summary(items: n, dtype: dtype, bytes: bytes, missingColumns: missing)
    }
}

/// Symmetric per-vector int8 quantisation: `scale = max|v| / 127`, `q = round(v / scale)`.
public enum Quantization {
    public static func int8(_ values: [Float], rows: Int, width: Int) -> (q: [Int8], scales: [Float]) {
        var q = [Int8](repeating: 0, count: rows * width)
        var scales = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var m: Float = 0
            for j in 0..<width { m = max(m, abs(values[r * width + j])) }
            let scale = m / 127
            scales[r] = scale
            guard scale > 0 else { continue }
            for j in 0..<width {
                q[r * width + j] = Int8(max(-127, min(127, (values[r * width + j] / scale).rounded())))
            }
        }
        return (q, scales)
    }
}
