#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TwinTower

/// Where a side's fields sit in an encoded record and in that side's tower input `x`.
///
/// Encoded records hold what the CSV said (bucket ids, raw dense values), never embedding
/// values: the tower input must be gathered from the tables as they are at each step, or the
/// towers would train on embeddings that the optimiser has already moved.
struct SideLayout: Sendable {
    struct Embedding: Sendable {
        /// `emb.<name>` table.
        let name: String
        /// Offset of the field's block in `x`.
        let offset: Int
        let dim: Int
        let buckets: Int
    }

    struct Dense: Sendable {
        /// Offset in `x` (one value).
        let offset: Int
    }

    let side: Side
    /// Width of `x`.
    let width: Int
    /// Categorical and multi fields, in feature-spec order.
    let embeddings: [Embedding]
    /// Dense fields, in feature-spec order (= the order of `dense.<side>.mean`).
    let dense: [Dense]
    /// Every field with the CSV column it reads, in feature-spec order.
    let fields: [FeatureSpec]

    init(side: Side, spec: ModelSpec) {
        var offset = 0
        var embeddings: [Embedding] = []
        var dense: [Dense] = []
        for f in spec.fields(of: side) {
            switch f.kind {
            case .dense: dense.append(Dense(offset: offset))
            case .categorical, .multi:
                embeddings.append(Embedding(name: f.name, offset: offset, dim: f.dim ?? 0, buckets: f.buckets ?? 1))
            }
            offset += f.inputWidth
        }
        self.side = side
        self.width = offset
        self.embeddings = embeddings
        self.dense = dense
        self.fields = spec.fields(of: side)
    }
}

/// Training rows parsed, validated and hashed once, read back by every epoch in any order.
///
/// Why: parsing every cell into a `String`, building a feature dictionary and hashing each
/// value cost more than the towers' arithmetic when it was repeated every epoch
/// (docs/TRAINING.md). Records live in a temporary file that is memory-mapped, so the process
/// holds the model, a batch and 8 bytes of offset per row; the kernel pages the rest.
///
/// Record layout (4-byte little-endian words; record `r` starts at word `offsets[r]`):
///
///     labels      UInt32        bit k = label of task k
///     weight      Float         only with `--weight-column` (`BatchAssembler.weighted`)
///     dense       Float × Du    user-side dense values as written (NaN = missing)
///     dense       Float × Di    item-side dense values
///     embeddings  for each categorical/multi field, user side then item side, spec order:
///                 count UInt32, then `count` bucket ids UInt32
final class EncodedRows: @unchecked Sendable {
    // Immutable after init: the mappings are read-only.
    private let words: MappedFile
    private let offsetFile: MappedFile
    let count: Int

    fileprivate init(wordsPath: String, offsetsPath: String) throws(FormatError) {
        words = try MappedFile(path: wordsPath)
        offsetFile = try MappedFile(path: offsetsPath)
        count = offsetFile.bytes.count / MemoryLayout<Int64>.stride
    }

    /// The first word of record `r`.
    func record(_ r: Int) -> UnsafePointer<UInt32> {
        let offset = offsetFile.bytes.load(fromByteOffset: r * MemoryLayout<Int64>.stride, as: Int64.self)
        // The mapping is page-aligned and every record starts on a word.
        return words.bytes.baseAddress!.assumingMemoryBound(to: UInt32.self) + Int(offset)
    }
}

/// Appends encoded records to a pair of files (buffered), then maps them as `EncodedRows`.
struct EncodedRowsWriter {
    private let wordsPath: String
    private let offsetsPath: String
    private var words: UnsafeMutablePointer<FILE>
    private var offsets: UnsafeMutablePointer<FILE>
    private var wordBuffer: [UInt32] = []
    private var offsetBuffer: [Int64] = []
    private var written: Int64 = 0
    private(set) var count = 0

    init(directory: String, name: String) throws(FormatError) {
        wordsPath = "\(directory)/\(name).words"
        offsetsPath = "\(directory)/\(name).offsets"
        guard let w = fopen(wordsPath, "wb") else { throw FormatError(wordsPath, "cannot create: \(String(cString: strerror(errno)))") }
        guard let o = fopen(offsetsPath, "wb") else {
            fclose(w)
            throw FormatError(offsetsPath, "cannot create: \(String(cString: strerror(errno)))")
        }
        words = w
        offsets = o
        wordBuffer.reserveCapacity(1 << 18)
        offsetBuffer.reserveCapacity(1 << 15)
    }

    /// Appends one record (already laid out as documented on `EncodedRows`).
    mutating func append(_ record: [UInt32]) throws(FormatError) {
        offsetBuffer.append(written + Int64(wordBuffer.count))
        wordBuffer.append(contentsOf: record)
        count += 1
        if wordBuffer.count >= 1 << 18 || offsetBuffer.count >= 1 << 15 { try flush() }
    }

    private mutating func flush() throws(FormatError) {
        let okWords = wordBuffer.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, words) == $0.count }
        let okOffsets = offsetBuffer.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, offsets) == $0.count }
        guard okWords && okOffsets else { throw FormatError(wordsPath, "cannot write the training cache: \(String(cString: strerror(errno)))") }
        written += Int64(wordBuffer.count)
        wordBuffer.removeAll(keepingCapacity: true)
        offsetBuffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, closes both files and maps them.
    consuming func finish() throws(FormatError) -> EncodedRows {
        try flush()
        let closed = fclose(words) == 0 && fclose(offsets) == 0
        guard closed else { throw FormatError(wordsPath, "cannot close the training cache: \(String(cString: strerror(errno)))") }
        return try EncodedRows(wordsPath: wordsPath, offsetsPath: offsetsPath)
    }

    /// Closes both files without mapping them (on an error path).
    consuming func abandon() {
        fclose(words)
        fclose(offsets)
    }
}
