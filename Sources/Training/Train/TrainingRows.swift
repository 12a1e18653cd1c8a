import TwinTower

/// One side of one encoded training row: the tower input and, per embedding field, the rows
/// that fed it (for the sparse embedding update).
struct EncodedSide {
    var x: [Float]
    /// For each categorical/multi field (in encoder order): its embedding rows; the gradient of
    /// the field's block is spread over them equally (the block is their mean).
    var rows: [[Int32]]
}

/// Streams a training CSV (SPEC §3) as encoded rows: user side, item side, labels.
///
/// Unknown columns are ignored; a missing feature column encodes as missing values. Bad rows
/// (wrong column count, labels not 0/1, a later task's label without an earlier one's,
/// non-numeric dense values) stop with the line number, or are skipped and counted.
struct TrainingRowReader {
    let path: String
    let model: Model
    let skipBadRows: Bool
    private var reader: CSVReader
    private let userEncoder: FeatureEncoder
    private let itemEncoder: FeatureEncoder
    private let userColumns: [Int?]
    private let itemColumns: [Int?]
    private let labelColumns: [Int]
    private let requestColumn: Int?
    private(set) var skipped = 0

    init(path: String, model: Model, skipBadRows: Bool) throws(FormatError) {
        self.path = path
        self.model = model
        self.skipBadRows = skipBadRows
        reader = try CSVReader(path: path)
        let columns = reader.columns
        userEncoder = model.encoder(.user)
        itemEncoder = model.encoder(.item)
        userColumns = userEncoder.fields.map { columns[$0.spec.name] }
        itemColumns = itemEncoder.fields.map { columns[$0.spec.name] }
        var labels: [Int] = []
        for task in model.spec.tasks {
            guard let c = columns[task.label] else { throw FormatError(path, "no label column \(task.label) for task \(task.name)") }
            labels.append(c)
        }
        labelColumns = labels
        requestColumn = columns["request_id"]
    }

    struct Row {
        var user: EncodedSide
        var item: EncodedSide
        var labels: [Float]
        var requestKey: UInt64
        var line: Int
    }

    mutating func next() throws(FormatError) -> Row? {
        while let cells = try reader.next() {
            let line = reader.line
            do {
                return try parse(cells, line: line)
            } catch {
                if skipBadRows { skipped += 1; continue }
                throw error
            }
        }
        return nil
    }

    private func parse(_ cells: [String], line: Int) throws(FormatError) -> Row {
        guard cells.count == reader.header.count else {
            throw FormatError(path, "line \(line): \(cells.count) columns, header has \(reader.header.count)")
        }
        var labels: [Float] = []
        for (k, c) in labelColumns.enumerated() {
            switch cells[c].trimmingSpaces() {
            case "0": labels.append(0)
            case "1": labels.append(1)
            default: throw FormatError(path, "line \(line): label \(model.spec.tasks[k].label) must be 0 or 1, is \"\(cells[c])\"")
            }
        }
        for k in 1..<max(labels.count, 1) where labels[k] > labels[k - 1] {
            throw FormatError(path, "line \(line): \(model.spec.tasks[k].label)=1 without \(model.spec.tasks[k - 1].label)=1")
        }
        let user = try encode(cells, encoder: userEncoder, columns: userColumns, line: line)
        let item = try encode(cells, encoder: itemEncoder, columns: itemColumns, line: line)
        let key = requestColumn.map { FeatureHasher.fnv1a(cells[$0].utf8) } ?? UInt64(line)
        return Row(user: user, item: item, labels: labels, requestKey: key, line: line)
    }

    private func encode(_ cells: [String], encoder: FeatureEncoder, columns: [Int?], line: Int) throws(FormatError) -> EncodedSide {
        var row = FeatureRow()
        for (field, column) in zip(encoder.fields, columns) {
            guard let column else { continue }
            do {
                row[field.spec.name] = try CSVFeatures.value(cells[column], kind: field.spec.kind, column: field.spec.name, line: line)
            } catch {
                throw FormatError(path, "line \(line): \(error.message) (column \(field.spec.name))")
            }
        }
        let x: [Float]
        do { x = try encoder.encode(row) } catch { throw FormatError(path, "line \(line): \(error.description)") }
        var rows: [[Int32]] = []
        for field in encoder.fields where field.spec.kind != .dense {
            var ids: [Int32] = []
            switch row[field.spec.name] {
            case .array(let values)?:
                for v in values { if let b = try? encoder.bucket(of: field, value: v, path: "") { ids.append(Int32(b)) } }
            case let v?:
                if let b = try? encoder.bucket(of: field, value: v, path: "") { ids.append(Int32(b)) }
            case nil: break
            }
            rows.append(ids)
        }
        return EncodedSide(x: x, rows: rows)
    }
}
