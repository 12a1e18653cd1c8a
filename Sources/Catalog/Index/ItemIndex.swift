import Foundation
import TwinTower

/// The item index (SPEC §1 "Item index"): item-tower outputs for a catalog, memory-mapped.
///
/// Layout of the safetensors file:
///   - `ids`     `[N]` I64, ascending, unique
///   - `vectors` `[N, T, d]` F32 | F16 | I8 (row-major: item, task, component)
///   - `scales`  `[N, T]` F32, only for I8 (value = int8 · scale)
///   - `rescore` `[N, T, d]` F32, optional beside F16/I8 vectors: the exact rows the best
///     candidates of a quantised scan are rescored from (`build-index --rescore`)
///   - `__metadata__`: `model_fingerprint`, `model_version`, `tasks` (JSON array), `dtype`,
///     `d`, `created_at`.
/// Vectors are read in place from the mapping when naturally aligned (our writer guarantees it);
/// a file from another writer whose tensors are not aligned is copied once at load.
public final class ItemIndex: @unchecked Sendable {
    // Immutable after init; the mapping and any copies live as long as the index.
    public let path: String
    public let count: Int
    public let taskCount: Int
    public let d: Int
    public let dtype: IndexDType
    public let fingerprint: String
    public let tasks: [String]
    public let metadata: [String: String]
    public let ids: UnsafeBufferPointer<Int64>
    /// `[N × T × d]` elements of `dtype`.
    public let vectors: UnsafeRawPointer
    /// `[N × T]`, I8 only.
    public let scales: UnsafePointer<Float>?
    /// `[N × T × d]` F32 rescore rows, when the file has them beside F16/I8 vectors.
    public let rescore: UnsafeRawPointer?
    public let table: IDTable
    /// Bytes of the vectors (and scales) tensor: what a full scan reads.
    public let vectorBytes: Int

    /// Where the vectors live: in place in the file mapping, or copied into huge pages.
    public let residency: Residency
    /// How the vector tables (vectors, scales, rescore) are held in memory.
    public enum Residency: String, Sendable {
        /// Read in place from the file mapping (tools, tests: nothing is copied).
        case mapped
        /// Copied into anonymous memory advised for transparent huge pages (serving: a random
        /// row then costs no page walk; see `HugePageBuffer`).
        case hugePages = "huge_pages"
    }

    /// The mapping the tables are read from (nil for an index built in memory).
    private let file: SafetensorsFile?
    private var owned: [UnsafeMutableRawPointer] = []
    private var copies: [HugePageBuffer] = []
    /// What holds the rows of a view index (`init(viewIDs:…)`), kept alive with it.
    private var owner: AnyObject?

    /// Loads and checks an index.
    ///
    /// - parameters:
    ///   - path: the index file.
    ///   - model: when given, the index must carry this model's fingerprint, tasks and `d`.
    ///   - populate: fault every page in before returning (serving: before `/readyz`).
    ///   - residency: `.hugePages` copies the vector tables into huge pages (falls back to the
    ///     mapping when anonymous memory cannot be had).
    public init(path: String, model: Model? = nil, populate: Bool = false, residency: Residency = .mapped) throws(FormatError) {
        self.path = path
        let file = try SafetensorsFile(path: path, populate: populate)
        self.file = file
        self.metadata = file.metadata
        guard let idsTensor = file.tensors["ids"] else { throw FormatError(path, "missing tensor ids") }
        guard idsTensor.dtype == .i64, idsTensor.shape.count == 1 else {
            throw FormatError(path, "tensor ids: expected I64 [N], found \(idsTensor.dtype.rawValue) \(idsTensor.shape)")
        }
        let n = idsTensor.shape[0]
        guard n > 0 else { throw FormatError(path, "the index holds no items") }
        guard let vec = file.tensors["vectors"] else { throw FormatError(path, "missing tensor vectors") }
        guard vec.shape.count == 3, vec.shape[0] == n else {
            throw FormatError(path, "tensor vectors: shape \(vec.shape), expected [\(n), T, d]")
        }
        let t = vec.shape[1]
        let d = vec.shape[2]
        guard t >= 1, d >= 1 else { throw FormatError(path, "tensor vectors: T and d must be at least 1") }
        let dtype: IndexDType
        switch vec.dtype {
        case .f32: dtype = .f32
        case .f16: dtype = .f16
        case .i8: dtype = .i8
        default: throw FormatError(path, "tensor vectors: dtype \(vec.dtype.rawValue), expected F32, F16 or I8")
        }
        if let declared = file.metadata["dtype"], declared.lowercased() != dtype.rawValue {
            throw FormatError(path, "__metadata__.dtype is \(declared) but vectors are \(vec.dtype.rawValue)")
        }
        self.count = n
        self.taskCount = t
        self.d = d
        self.dtype = dtype
        self.fingerprint = file.metadata["model_fingerprint"] ?? ""
        self.tasks = Self.parseTasks(file.metadata["tasks"]) ?? []

        if let model {
            guard fingerprint == model.fingerprint else {
                throw FormatError(path, "model_fingerprint \(fingerprint.isEmpty ? "(none)" : fingerprint) is not the model's \(model.fingerprint): rebuild the index with this model")
            }
            guard t == model.spec.tasks.count, d == model.d else {
                throw FormatError(path, "vectors are [N, \(t), \(d)] but the model has \(model.spec.tasks.count) tasks of d = \(model.d)")
            }
            if !tasks.isEmpty && tasks != model.taskNames {
                throw FormatError(path, "__metadata__.tasks \(tasks) differ from the model's \(model.taskNames)")
            }
        }

        var owned: [UnsafeMutableRawPointer] = []
        var copies: [HugePageBuffer] = []
        /// In place when aligned, else a 64-byte-aligned copy.
        func place(_ view: TensorView, alignment: Int) -> UnsafeRawPointer {
            if let base = view.bytes.baseAddress, Int(bitPattern: base) % alignment == 0 { return base }
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(view.bytes.count, 1), alignment: 64)
            if view.bytes.count > 0 { copy.copyMemory(from: view.bytes.baseAddress!, byteCount: view.bytes.count) }
            owned.append(copy)
            return UnsafeRawPointer(copy)
        }
        let idsPointer = place(idsTensor, alignment: 8).assumingMemoryBound(to: Int64.self)
        let ids = UnsafeBufferPointer(start: idsPointer, count: n)
        for i in 1..<max(n, 1) where ids[i] <= ids[i - 1] {
            // The message reads `ids`, which may point into an aligned copy in `owned`: build it
            // before that copy is freed (found by the `safetensors` fuzz target).
            let message = ids[i] == ids[i - 1] ? "duplicate id \(ids[i]) at rows \(i - 1) and \(i)"
                                               : "ids are not ascending at row \(i) (\(ids[i - 1]) then \(ids[i]))"
            owned.forEach { $0.deallocate() }
            throw FormatError(path, message)
        }
        self.ids = ids
        /// A vector table: a huge-page copy when asked for (and possible), else `place`.
        func table(_ view: TensorView, alignment: Int) -> UnsafeRawPointer {
            if residency == .hugePages, view.bytes.count > 0, let copy = HugePageBuffer(copying: view.bytes) {
                HugePageBuffer.dropResidentPages(view.bytes)
                copies.append(copy)
                return UnsafeRawPointer(copy.base)
            }
            return place(view, alignment: alignment)
        }
        self.vectors = table(vec, alignment: vec.dtype.size)
        var bytes = vec.bytes.count
        if dtype == .i8 {
            guard let s = file.tensors["scales"], s.dtype == .f32, s.shape == [n, t] else {
                owned.forEach { $0.deallocate() }
                throw FormatError(path, "an I8 index needs tensor scales F32 [\(n), \(t)]")
            }
            let sp = table(s, alignment: 4).assumingMemoryBound(to: Float.self)
            let sb = UnsafeBufferPointer(start: sp, count: n * t)
            if let bad = sb.firstIndex(where: { !$0.isFinite }) {
                owned.forEach { $0.deallocate() }
                throw FormatError(path, "tensor scales: value at \(bad) is not finite")
            }
            self.scales = sp
            bytes += s.bytes.count
        } else {
            self.scales = nil
        }
        self.vectorBytes = bytes
        if let r = file.tensors["rescore"], dtype != .f32 {
            guard r.dtype == .f32, r.shape == [n, t, d] else {
                owned.forEach { $0.deallocate() }
                throw FormatError(path, "tensor rescore: expected F32 [\(n), \(t), \(d)], found \(r.dtype.rawValue) \(r.shape)")
            }
            // Read in place even when serving: a request touches only its best few hundred
            // rescore rows, so a huge-page copy would cost N·T·d·4 bytes of anonymous memory for
            // no measurable gain; in the mapping they stay reclaimable page cache.
            self.rescore = place(r, alignment: 4)
        } else {
            // Beside F32 vectors a rescore tensor would repeat them: read and ignored.
            self.rescore = nil
        }
        self.owned = owned
        self.copies = copies
        self.residency = copies.isEmpty ? .mapped : .hugePages
        self.table = IDTable(ids: ids, hugePages: residency == .hugePages)
        if populate { _ = touch() }
    }

    /// An index over rows held by someone else: the live catalog's delta rows (`DeltaArena`,
    /// `ItemDelta`). Nothing is copied; `owner` is kept alive as long as this index.
    ///
    /// - parameters:
    ///   - ids: `[n]`, in row order (any order; the rows' `table` is `table`).
    ///   - vectors: `[n × T × d]` in `dtype`; `scales` `[n × T]` for I8; `rescore` `[n × T × d]` F32.
    ///   - table: id → row over the rows this index serves (stale rows left out).
    init(viewIDs ids: UnsafeBufferPointer<Int64>, vectors: UnsafeRawPointer, scales: UnsafePointer<Float>?,
         rescore: UnsafeRawPointer?, table: IDTable, taskCount t: Int, d: Int, dtype: IndexDType, fingerprint: String,
         tasks: [String], owner: AnyObject, path: String = "(delta)") {
        let n = ids.count
        self.path = path
        self.file = nil
        self.metadata = [:]
        self.count = n
        self.taskCount = t
        self.d = d
        self.dtype = dtype
        self.fingerprint = fingerprint
        self.tasks = tasks
        self.ids = ids
        self.vectors = vectors
        self.scales = scales
        self.rescore = rescore
        self.vectorBytes = n * t * d * dtype.bytesPerValue + (dtype == .i8 ? n * t * 4 : 0)
        self.owned = []
        self.copies = []
        self.owner = owner
        self.residency = .mapped
        self.table = table
    }

    deinit { owned.forEach { $0.deallocate() } }

    static func parseTasks(_ text: String?) -> [String]? {
        guard let text, let data = text.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode([String].self, from: data)
    }

    /// Reads one value per page of the vectors so the first request pays no page faults.
    @discardableResult
    public func touch() -> Float {
        var acc: Float = 0
        let stride = 4096
        var offset = 0
        let total = count * taskCount * d * dtype.bytesPerValue
        while offset < total {
            acc += Float(vectors.load(fromByteOffset: offset, as: UInt8.self))
            offset += stride
        }
        if let rescore {
            offset = 0
            while offset < count * taskCount * d * 4 {
                acc += Float(rescore.load(fromByteOffset: offset, as: UInt8.self))
                offset += stride
            }
        }
        return acc
    }

    /// The row of `id`, or -1.
    @inline(__always)
    public func row(of id: Int64) -> Int32 { table.row(of: id) }

    /// Bytes of the rescore rows (0 without them).
    public var rescoreBytes: Int { rescore == nil ? 0 : count * taskCount * d * 4 }

    /// One item's vector for task `k`, dequantised (tests, inspection).
    public func vector(row: Int, task k: Int) -> [Float] {
        let base = (row * taskCount + k) * d
        switch dtype {
        case .f32: return (0..<d).map { vectors.load(fromByteOffset: (base + $0) * 4, as: Float.self) }
        case .f16: return (0..<d).map { Float(vectors.load(fromByteOffset: (base + $0) * 2, as: Float16.self)) }
        case .i8:
            let s = scales?[row * taskCount + k] ?? 0
            return (0..<d).map { Float(vectors.load(fromByteOffset: base + $0, as: Int8.self)) * s }
        }
    }
}
