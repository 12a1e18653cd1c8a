/// Why a feature value could not be encoded; `field` is the request or CSV path of the value.
public struct FeatureError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field): \(message)" }
}

/// Encodes one side's raw features into the tower input `x` (SPEC §1):
/// per field in feature-spec order, `categorical` → its embedding row, `multi` → the mean of its
/// values' rows, `dense` → `(v - mean) / std`. Missing or empty values give zeros.
public struct FeatureEncoder: Sendable {
    /// One field of the side with everything needed to encode it.
    public struct Field: Sendable {
        public let spec: FeatureSpec
        /// Offset of this field's block in `x`.
        public let offset: Int
        /// FNV state after `name + "\u{1F}"`.
        public let seed: UInt64
        /// Index into the side's dense mean/std, for dense fields.
        public let denseIndex: Int
    }

    public let side: Side
    public let fields: [Field]
    public let width: Int
    /// Embedding tables by field name, `[buckets × dim]` row-major.
    public let embeddings: [String: [Float]]
    public let denseMean: [Float]
    public let denseStd: [Float]

    public init(side: Side, spec: ModelSpec, embeddings: [String: [Float]], denseMean: [Float], denseStd: [Float]) {
        var fields: [Field] = []
        var offset = 0
        var dense = 0
        for f in spec.fields(of: side) {
            fields.append(Field(spec: f, offset: offset, seed: FeatureHasher.fieldSeed(f.name),
                                denseIndex: f.kind == .dense ? dense : -1))
            if f.kind == .dense { dense += 1 }
            offset += f.inputWidth
        }
        self.side = side
        self.fields = fields
        self.width = offset
        self.embeddings = embeddings
        self.denseMean = denseMean
        self.denseStd = denseStd
    }

    /// Encodes `row` into `x` (`width` floats, overwritten).
    public func encode(_ row: FeatureRow, into x: UnsafeMutableBufferPointer<Float>) throws(FeatureError) {
        precondition(x.count >= width)
        for field in fields {
            try encode(field: field, value: row.values[field.spec.name], path: row.path(of: field.spec.name), into: x)
        }
    }

    /// Encodes `row` and returns `x`.
    public func encode(_ row: FeatureRow) throws(FeatureError) -> [Float] {
        var x = [Float](repeating: 0, count: width)
        try x.withUnsafeMutableBufferPointer { (buf) throws(FeatureError) in try encode(row, into: buf) }
        return x
    }

    /// The embedding row of one categorical value, or nil for an empty value.
    public func bucket(of field: Field, value: FeatureValue, path: String) throws(FeatureError) -> Int? {
        let buckets = field.spec.buckets ?? 1
        switch value {
        case .string(let s):
            if s.isEmpty { return nil }
            return FeatureHasher.bucket(seed: field.seed, value: s, buckets: buckets)
        case .integer(let i):
            return FeatureHasher.bucket(seed: field.seed, value: i, buckets: buckets)
        case .null:
            return nil
        case .number:
            throw FeatureError(field: path, message: "a categorical value must be a string or an integer, not a fractional number")
        case .bool:
            throw FeatureError(field: path, message: "a categorical value must be a string or an integer, not a boolean")
        case .array:
            throw FeatureError(field: path, message: "a nested array is not a categorical value")
        }
    }

    func encode(field: Field, value: FeatureValue?, path: String, into x: UnsafeMutableBufferPointer<Float>) throws(FeatureError) {
        let spec = field.spec
        switch spec.kind {
        case .dense:
            var v: Float = 0
            switch value {
            case nil, .null?: v = 0
            case .integer(let i)?: v = Self.normalise(Float(i), mean: denseMean[field.denseIndex], std: denseStd[field.denseIndex])
            case .number(let d)?:
                guard d.isFinite else { throw FeatureError(field: path, message: "a dense value must be a finite number") }
                v = Self.normalise(Float(d), mean: denseMean[field.denseIndex], std: denseStd[field.denseIndex])
            case .string?:
                throw FeatureError(field: path, message: "a dense value must be a number, not a string")
            case .bool?:
                throw FeatureError(field: path, message: "a dense value must be a number, not a boolean")
            case .array?:
                throw FeatureError(field: path, message: "a dense value must be a number, not an array")
            }
            x[field.offset] = v
        case .categorical, .multi:
            let dim = spec.dim ?? 0
            let block = UnsafeMutableBufferPointer(rebasing: x[field.offset..<(field.offset + dim)])
            block.update(repeating: 0)
            guard let value, let table = embeddings[spec.name] else { return }
            var rows: [Int] = []
            if case .array(let values) = value {
                guard spec.kind == .multi else {
                    throw FeatureError(field: path, message: "a categorical field takes one value, not an array")
                }
                rows.reserveCapacity(values.count)
                for (i, v) in values.enumerated() {
                    if let r = try bucket(of: field, value: v, path: "\(path)[\(i)]") { rows.append(r) }
                }
            } else if let r = try bucket(of: field, value: value, path: path) {
                rows.append(r)
            }
            table.withUnsafeBufferPointer { t in
                rows.withUnsafeBufferPointer { Self.addMean(of: $0, table: t, dim: dim, into: block.baseAddress!) }
            }
        }
    }

    /// A categorical or multi block: adds the mean of the table rows `rows` into `block` (`dim`
    /// floats, zero on entry; left zero when `rows` is empty). Training's batch assembly calls
    /// this too, so both sides of the model read embeddings alike.
    ///
    /// Shapes: `table` `[buckets × dim]` row-major; every row in `rows` is `< buckets`.
    @inlinable
    public static func addMean<R: Collection>(of rows: R, table: UnsafeBufferPointer<Float>, dim: Int,
                                              into block: UnsafeMutablePointer<Float>) where R.Element: BinaryInteger {
        guard !rows.isEmpty, let t = table.baseAddress else { return }
        for r in rows {
            let row = t + Int(r) * dim
            for j in 0..<dim { block[j] += row[j] }
        }
        if rows.count > 1 {
            let scale = 1 / Float(rows.count)
            for j in 0..<dim { block[j] *= scale }
        }
    }

    /// A dense value as the tower sees it: `(v − mean) / std`, and 0 for a missing (NaN) or
    /// non-finite result.
    @inlinable
    public static func normalise(_ v: Float, mean: Float, std: Float) -> Float {
        let z = (v - mean) / std
        return z.isFinite ? z : 0
    }
}
