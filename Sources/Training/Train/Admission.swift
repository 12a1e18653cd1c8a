import TwinTower

/// Frequency-based feature admission and the shared out-of-vocabulary (OOV) row.
///
/// Why: a hashed id table gives every user and every item its own row from the first batch, and
/// those rows memorise the training labels within an epoch, before the towers have learnt the
/// structure shared by attributes (issue 13: ids cost 0.04–0.05 AUC). Production recommenders
/// admit a value into the vocabulary only after it has been seen often enough; the rest share
/// one OOV row, which learns what an unknown value looks like.
///
/// How, without changing the model format or serving: during training every categorical/multi
/// table has one extra row, index `buckets`, the OOV row. A bucket is *admitted* when the
/// training rows (after the validation split) put at least `minCount` values into it; a value in
/// a non-admitted bucket reads and updates the OOV row instead of its own. At export the extra
/// row is dropped and every non-admitted bucket's row of `emb.<field>` holds the OOV vector, so
/// serving's unchanged hashing sends a rare or never-seen value to the very vector it trained
/// with. Validation reads through the same map, so validation AUC is what the exported model
/// scores. docs/ARCHITECTURE.md states the rule for other trainers.
struct Admission: Sendable {
    struct Field: Sendable {
        let name: String
        let buckets: Int
        let dim: Int
        /// An id field (see `IDFields`): the target of id dropout, warm start and `--id-lr-scale`.
        let isID: Bool
        /// Bucket → training-table row: the bucket itself when admitted, `buckets` (OOV) when not.
        /// Empty when admission is off (identity).
        let rowOf: [UInt32]
        /// Values per bucket in the training rows.
        let counts: [UInt32]

        var oovRow: Int { buckets }
        func isAdmitted(_ bucket: Int) -> Bool { rowOf.isEmpty || Int(rowOf[bucket]) == bucket }
    }

    /// 0: admission off (every bucket keeps its row; the OOV row is still there for id dropout).
    let minCount: Int
    /// Categorical and multi fields in record order: user side then item side, spec order.
    let fields: [Field]

    init(spec: ModelSpec, counts: [[UInt32]], minCount: Int, idFields: Set<String>) {
        self.minCount = minCount
        let embedded = Side.allCases.flatMap { spec.fields(of: $0) }.filter { $0.kind != .dense }
        precondition(embedded.count == counts.count, "one count array per embedded field")
        fields = zip(embedded, counts).map { f, c in
            let buckets = f.buckets ?? 1
            let rowOf: [UInt32] = minCount <= 0 ? [] : (0..<buckets).map { c[$0] >= UInt32(minCount) ? UInt32($0) : UInt32(buckets) }
            return Field(name: f.name, buckets: buckets, dim: f.dim ?? 0, isID: idFields.contains(f.name), rowOf: rowOf, counts: c)
        }
    }

    /// Per-field vocabulary figures, as `prerank train` prints them and model.json records them.
    func vocabulary() -> [FieldVocabulary] {
        fields.map { f in
            var seen = 0, admitted = 0, values = 0, oov = 0
            for (b, c) in f.counts.enumerated() where c > 0 {
                seen += 1
                values += Int(c)
                if f.isAdmitted(b) { admitted += 1 } else { oov += Int(c) }
            }
            return FieldVocabulary(name: f.name, buckets: f.buckets, isID: f.isID, seenBuckets: seen,
                                   admittedBuckets: minCount <= 0 ? seen : admitted, values: values, oovValues: oov)
        }
    }

    /// The model as serving reads it: each table loses its OOV row and every non-admitted bucket
    /// (and, with `idsOff`, every bucket of an id field: the model was trained without them) holds
    /// the OOV vector.
    func export(_ model: Model, idsOff: Bool = false) -> Model {
        var out = model
        for f in fields {
            guard let table = model.embeddings[f.name], table.count == (f.buckets + 1) * f.dim else { continue }
            var t = [Float](repeating: 0, count: f.buckets * f.dim)
            let oov = f.oovRow * f.dim
            for b in 0..<f.buckets {
                let src = (idsOff && f.isID) || !f.isAdmitted(b) ? oov : b * f.dim
                for j in 0..<f.dim { t[b * f.dim + j] = table[src + j] }
            }
            out.embeddings[f.name] = t
        }
        return out
    }
}

/// One field's vocabulary in the training rows.
public struct FieldVocabulary: Sendable {
    public var name: String
    public var buckets: Int
    public var isID: Bool
    /// Buckets at least one training value hashed into.
    public var seenBuckets: Int
    /// Of those, buckets with at least `--min-count` values (their own row at export).
    public var admittedBuckets: Int
    /// Values in the training rows (a multi cell counts each of its values).
    public var values: Int
    /// Of those, values routed to the OOV row.
    public var oovValues: Int

    public var admittedShare: Double { seenBuckets > 0 ? Double(admittedBuckets) / Double(seenBuckets) : 1 }
    public var oovShare: Double { values > 0 ? Double(oovValues) / Double(values) : 0 }
}

/// Which fields are ids: the target of `--id-dropout`, `--id-warmup-epochs`, `--id-lr-scale`, `--id-dim`.
public enum IDFields {
    /// A categorical field whose spec asks for at least this many buckets is an id: authors size
    /// `buckets` to the cardinality (SPEC §1's example gives user_id 100,003 and item_id 200,003,
    /// attributes tens to a few thousand).
    public static let minimumBuckets = 5000

    /// `explicit` names (validated) or, when nil, the categorical fields with ≥ `minimumBuckets` buckets.
    public static func resolve(_ features: [FeatureSpec], explicit: [String]?) throws(FormatError) -> Set<String> {
        if let explicit {
            for name in explicit where !features.contains(where: { $0.name == name && $0.kind != .dense }) {
                throw FormatError("--id-fields", "\(name) is not a categorical or multi field of features.yaml")
            }
            return Set(explicit)
        }
        return Set(features.filter { $0.kind == .categorical && ($0.buckets ?? 0) >= minimumBuckets }.map(\.name))
    }
}
