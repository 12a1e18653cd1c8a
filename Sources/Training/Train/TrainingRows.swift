import Foundation
import TwinTower

/// The training CSV (SPEC §3) after one streaming pass: rows encoded for training and for
/// validation, dense statistics, and what was skipped.
struct TrainingData {
    var train: EncodedRows
    var validation: EncodedRows
    /// `dense.<side>.mean` / `.std` over every row read (a constant field gets std 1).
    var denseMean: [Side: [Float]]
    var denseStd: [Side: [Float]]
    var skipped: Int
    /// Positives per task among the training rows (reported).
    var positives: [Int]
    /// Σ weight · label per task and Σ weight over the training rows (`--weight-column`; without
    /// it every weight is 1): the base rates the heads start at are the weighted ones.
    var weightedPositives: [Double] = []
    var trainWeight: Double = 0
    /// Values per bucket in the training rows (not validation), per categorical/multi field in
    /// record order (user side then item side): what feature admission counts (Admission.swift).
    var counts: [[UInt32]] = []
}

/// Reads a training CSV once: validates every row, hashes categorical values, splits rows by
/// request id into training and validation, and accumulates dense statistics.
///
/// Unknown columns are ignored and a feature column that is absent encodes as missing values, so
/// any writer of the SPEC's files works, not only `prerank generate`. Bad rows (wrong column
/// count, labels not 0/1, a later task's label without an earlier one's, non-numeric dense
/// values) stop with the line number, or are skipped and counted.
struct TrainingRowReader {
    let path: String
    let spec: ModelSpec
    let skipBadRows: Bool
    let user: SideLayout
    let item: SideLayout
    /// `--weight-column`: the column read as each row's loss weight (finite, ≥ 0), stored in the
    /// record after the labels; nil: no weight word, every row weighs 1.
    let weightColumn: String?

    init(path: String, spec: ModelSpec, skipBadRows: Bool, weightColumn: String? = nil) {
        self.path = path
        self.spec = spec
        self.skipBadRows = skipBadRows
        self.weightColumn = weightColumn
        user = SideLayout(side: .user, spec: spec)
        item = SideLayout(side: .item, spec: spec)
    }

    /// - parameters:
    ///   - directory: where the encoded rows are written (a temporary directory).
    ///   - isValidation: the split, by hash of `request_id` (or of the line number without one).
    func read(into directory: String, isValidation: (UInt64) -> Bool) throws(FormatError) -> TrainingData {
        var reader = try CSVReader(path: path)
        let columns = reader.columns
        var labelColumns: [Int] = []
        for task in spec.tasks {
            guard let c = columns[task.label] else { throw FormatError(path, "no label column \(task.label) for task \(task.name)") }
            labelColumns.append(c)
        }
        let requestColumn = columns["request_id"]
        var weightIndex: Int? = nil
        if let name = weightColumn {
            guard let c = columns[name] else { throw FormatError(path, "no weight column \(name) (--weight-column)") }
            weightIndex = c
        }
        let sides = [user, item]
        // Column of each field, side by side, in spec order (nil: absent, encodes as missing).
        let fieldColumns = sides.map { $0.fields.map { columns[$0.name] } }
        let seeds = sides.map { $0.fields.map { FeatureHasher.fieldSeed($0.name) } }

        var train = try EncodedRowsWriter(directory: directory, name: "train")
        var validation: EncodedRowsWriter
        do { validation = try EncodedRowsWriter(directory: directory, name: "validation") } catch {
            train.abandon()
            throw error
        }
        var sums = sides.map { [(sum: Double, squares: Double, n: Int)](repeating: (0, 0, 0), count: $0.dense.count) }
        var positives = [Int](repeating: 0, count: spec.tasks.count)
        var weightedPositives = [Double](repeating: 0, count: spec.tasks.count)
        var trainWeight = 0.0
        let embedded = sides.flatMap { $0.embeddings }
        var counts = embedded.map { [UInt32](repeating: 0, count: $0.buckets) }
        let embeddingStart = (weightIndex == nil ? 1 : 2) + sides.reduce(0) { $0 + $1.dense.count }
        var skipped = 0
        var record: [UInt32] = []
        var dense: [[Float]] = sides.map { [Float](repeating: .nan, count: $0.dense.count) }
        do throws(FormatError) {
            while let cells = try reader.next() {
                let line = reader.line
                do throws(FormatError) {
                    guard cells.count == reader.header.count else {
                        throw FormatError(path, "line \(line): \(cells.count) columns, header has \(reader.header.count)")
                    }
                    record.removeAll(keepingCapacity: true)
                    record.append(try labels(cells, columns: labelColumns, line: line))
                    if let weightIndex { record.append(try weight(cells[weightIndex], line: line).bitPattern) }
                    for s in sides.indices {
                        try denseValues(cells, side: sides[s], columns: fieldColumns[s], line: line, into: &dense[s])
                        for v in dense[s] { record.append(v.bitPattern) }
                    }
                    for s in sides.indices {
                        appendBuckets(cells, side: sides[s], columns: fieldColumns[s], seeds: seeds[s], to: &record)
                    }
                } catch {
                    if skipBadRows { skipped += 1; continue }
                    throw error
                }
                // The row is valid: it counts.
                for s in sides.indices {
                    for (i, v) in dense[s].enumerated() where !v.isNaN {
                        sums[s][i].sum += Double(v)
                        sums[s][i].squares += Double(v) * Double(v)
                        sums[s][i].n += 1
                    }
                }
                let key = requestColumn.map { FeatureHasher.fnv1a(cells[$0].utf8) } ?? UInt64(line)
                if isValidation(key) {
                    try validation.append(record)
                } else {
                    let w = weightIndex == nil ? 1 : Double(Float(bitPattern: record[1]))
                    trainWeight += w
                    for k in positives.indices where record[0] & (1 << UInt32(k)) != 0 {
                        positives[k] += 1
                        weightedPositives[k] += w
                    }
                    var p = embeddingStart
                    // Admission counts the values of rows that train (a weight-0 row is as if absent).
                    for f in counts.indices where w > 0 {
                        let n = Int(record[p])
                        for j in 0..<n { counts[f][Int(record[p + 1 + j])] &+= 1 }
                        p += 1 + n
                    }
                    try train.append(record)
                }
            }
        } catch {
            train.abandon()
            validation.abandon()
            throw error
        }
        guard train.count + validation.count > 0 else {
            train.abandon()
            validation.abandon()
            throw FormatError(path, "no training rows")
        }
        var mean: [Side: [Float]] = [:], std: [Side: [Float]] = [:]
        for (s, side) in sides.enumerated() {
            mean[side.side] = sums[s].map { $0.n > 0 ? Float($0.sum / Double($0.n)) : 0 }
            std[side.side] = sums[s].map { v in
                guard v.n > 1 else { return 1 }
                let m = v.sum / Double(v.n)
                let sd = max(v.squares / Double(v.n) - m * m, 0).squareRoot()
                return sd > 1e-6 ? Float(sd) : 1
            }
        }
        return TrainingData(train: try train.finish(), validation: try validation.finish(),
                            denseMean: mean, denseStd: std, skipped: skipped, positives: positives,
                            weightedPositives: weightedPositives, trainWeight: trainWeight, counts: counts)
    }

    /// A `--weight-column` cell: a finite number ≥ 0 (as a Float), else a one-line error naming
    /// the file, line and column.
    private func weight(_ cell: String, line: Int) throws(FormatError) -> Float {
        let t = cell.trimmingSpaces()
        guard let v = Double(t), v.isFinite, v >= 0, Float(v).isFinite else {
            throw FormatError(path, "line \(line): weight \"\(cell)\" must be a finite number ≥ 0 (column \(weightColumn ?? ""))")
        }
        return Float(v)
    }

    /// The labels as a bitmask; each must be 0 or 1 and never 1 after a 0 along the chain.
    private func labels(_ cells: [String], columns: [Int], line: Int) throws(FormatError) -> UInt32 {
        var bits: UInt32 = 0
        for (k, c) in columns.enumerated() {
            switch cells[c].trimmingSpaces() {
            case "0": break
            case "1":
                if k > 0 && bits & (1 << UInt32(k - 1)) == 0 {
                    throw FormatError(path, "line \(line): \(spec.tasks[k].label)=1 without \(spec.tasks[k - 1].label)=1")
                }
                bits |= 1 << UInt32(k)
            default: throw FormatError(path, "line \(line): label \(spec.tasks[k].label) must be 0 or 1, is \"\(cells[c])\"")
            }
        }
        return bits
    }

    private func denseValues(_ cells: [String], side: SideLayout, columns: [Int?], line: Int,
                             into out: inout [Float]) throws(FormatError) {
        var i = 0
        for (field, column) in zip(side.fields, columns) where field.kind == .dense {
            defer { i += 1 }
            out[i] = .nan
            guard let column else { continue }
            let t = cells[column].trimmingSpaces()
            if t.isEmpty { continue }
            guard let v = Double(t), v.isFinite, Float(v).isFinite else {
                throw FormatError(path, "line \(line): \"\(cells[column])\" is not a finite number (column \(field.name))")
            }
            out[i] = Float(v)
        }
    }

    /// Count and bucket ids of each categorical/multi field (SPEC §3 hashing; `|` separates the
    /// values of a multi cell; an empty value is missing).
    private func appendBuckets(_ cells: [String], side: SideLayout, columns: [Int?], seeds: [UInt64], to record: inout [UInt32]) {
        for (f, field) in side.fields.enumerated() where field.kind != .dense {
            let buckets = field.buckets ?? 1
            let countAt = record.count
            record.append(0)
            guard let column = columns[f] else { continue }
            let cell = cells[column]
            if field.kind == .categorical {
                if !cell.isEmpty {
                    record.append(UInt32(FeatureHasher.bucket(seed: seeds[f], value: cell, buckets: buckets)))
                }
            } else {
                for part in cell.utf8.split(separator: UInt8(ascii: "|"), omittingEmptySubsequences: true) {
                    let h = FeatureHasher.fnv1a(part, seed: seeds[f])
                    record.append(UInt32(h % UInt64(buckets)))
                }
            }
            record[countAt] = UInt32(record.count - countAt - 1)
        }
    }
}
