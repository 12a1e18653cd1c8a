import Foundation

/// Element types of the safetensors format that prerank reads or writes.
public enum DType: String, Sendable, Equatable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

/// One tensor's entry in a safetensors header, with its bytes.
public struct TensorView: @unchecked Sendable {
    // The bytes point into storage owned by the `SafetensorsFile` that made this view; the view
    // must not outlive it (the file is immutable, so sharing across threads is safe).
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer

    public var elementCount: Int { shape.reduce(1, *) }

    /// Copies an F32 tensor into an array (unaligned data is read byte-wise).
    public func floats() -> [Float] {
        precondition(dtype == .f32)
        let n = elementCount
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<(n * 4)])) }
            count = n
        }
    }

    /// Copies an I64 tensor into an array.
    public func int64s() -> [Int64] {
        precondition(dtype == .i64)
        let n = elementCount
        return [Int64](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<(n * 8)])) }
            count = n
        }
    }
}

/// A parsed safetensors file (https://github.com/huggingface/safetensors format):
/// 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data region.
///
/// Every offset is validated before any tensor byte is touched: tensors must lie inside the data
/// region, their byte length must equal `shape × dtype size`, and together they must tile the data
/// region without gaps or overlaps (what the official reader enforces). So a hostile file gives a
/// `FormatError`, never an out-of-bounds read.
public struct SafetensorsFile: @unchecked Sendable {
    // `storage` keeps the bytes alive (a mapping or an owned buffer); views point into it.
    public let path: String
    public let tensors: [String: TensorView]
    public let metadata: [String: String]
    /// Byte offset of the data region from the start of the file.
    public let dataStart: Int
    private let storage: AnyObject

    /// Header JSON larger than this is refused (the official reader uses 100 MB).
    public static let maxHeaderBytes = 100_000_000

    /// Maps `path` and parses it.
    public init(path: String, populate: Bool = false) throws(FormatError) {
        let mapped = try MappedFile(path: path, populate: populate)
        try self.init(bytes: mapped.bytes, owner: mapped, path: path)
    }

    /// Parses bytes owned by `owner` (kept alive by the returned value).
    public init(bytes: UnsafeRawBufferPointer, owner: AnyObject, path: String = "") throws(FormatError) {
        self.path = path
        self.storage = owner
        guard bytes.count >= 8 else { throw FormatError(path, "truncated: \(bytes.count) bytes, need at least 8 for the header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        // A file of another kind (a CSV given as the index, say) fails here: say that first.
        let looksLikeHeader = bytes.count > 8 && bytes[8] == UInt8(ascii: "{")
        guard n <= UInt64(Self.maxHeaderBytes) else {
            throw FormatError(path, looksLikeHeader ? "header length \(n) is larger than the 100 MB limit"
                                                    : "not a safetensors file (its first 8 bytes are no plausible header length and no JSON header follows)")
        }
        guard n <= UInt64(bytes.count - 8) else {
            throw FormatError(path, looksLikeHeader ? "header length \(n) runs past the end of the file (\(bytes.count) bytes)"
                                                    : "not a safetensors file (its first 8 bytes are no plausible header length and no JSON header follows)")
        }
        let headerLength = Int(n)
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])
        guard let headerText = String(validating: headerBytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw FormatError(path, "header is not valid UTF-8")
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(headerText.utf8), options: [])
        } catch {
            throw FormatError(path, "header is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else { throw FormatError(path, "header is not a JSON object") }

        let dataStart = 8 + headerLength
        let dataSize = bytes.count - dataStart
        let data = UnsafeRawBufferPointer(rebasing: bytes[dataStart...])
        var tensors: [String: TensorView] = [:]
        var metadata: [String: String] = [:]
        var extents: [(begin: Int, end: Int, name: String)] = []

        for (name, value) in object {
            if name == "__metadata__" {
                guard let meta = value as? [String: Any] else { throw FormatError(path, "__metadata__ must be an object of strings") }
                for (k, v) in meta {
                    guard let s = v as? String else { throw FormatError(path, "__metadata__.\(k) must be a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any] else { throw FormatError(path, "tensor \(name): entry must be an object") }
            guard let dtypeName = entry["dtype"] as? String else { throw FormatError(path, "tensor \(name): missing dtype") }
            guard let dtype = DType(rawValue: dtypeName) else { throw FormatError(path, "tensor \(name): unknown dtype \(dtypeName)") }
            guard let shapeAny = entry["shape"] as? [Any] else { throw FormatError(path, "tensor \(name): missing shape") }
            var shape: [Int] = []
            var count = 1
            for dimension in shapeAny {
                guard let d = Self.nonNegativeInt(dimension) else { throw FormatError(path, "tensor \(name): shape must hold non-negative integers") }
                shape.append(d)
                let (product, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw FormatError(path, "tensor \(name): shape overflows") }
                count = product
            }
            guard let offsets = entry["data_offsets"] as? [Any], offsets.count == 2,
                  let begin = Self.nonNegativeInt(offsets[0]), let end = Self.nonNegativeInt(offsets[1]) else {
                throw FormatError(path, "tensor \(name): data_offsets must be two non-negative integers")
            }
            guard begin <= end, end <= dataSize else {
                throw FormatError(path, "tensor \(name): data_offsets [\(begin), \(end)] out of range of the \(dataSize)-byte data region")
            }
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, byteCount == end - begin else {
                throw FormatError(path, "tensor \(name): \(end - begin) bytes do not match shape \(shape) of \(dtype.rawValue)")
            }
            extents.append((begin, end, name))
            tensors[name] = TensorView(name: name, dtype: dtype, shape: shape,
                                       bytes: UnsafeRawBufferPointer(rebasing: data[begin..<end]))
        }
        // The tensors must tile the data region: sorted by offset, each starts where the last ended.
        extents.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        for e in extents {
            if e.begin < cursor { throw FormatError(path, "tensor \(e.name): data overlaps the previous tensor") }
            if e.begin > cursor { throw FormatError(path, "tensor \(e.name): gap of \(e.begin - cursor) bytes before its data") }
            cursor = e.end
        }
        guard cursor == dataSize else {
            throw FormatError(path, "data region has \(dataSize - cursor) trailing bytes not covered by any tensor")
        }
        self.tensors = tensors
        self.metadata = metadata
        self.dataStart = dataStart
    }

    private static func nonNegativeInt(_ any: Any) -> Int? {
        guard let number = any as? NSNumber else { return nil }
        // JSON booleans arrive as NSNumber too; their objCType is "c".
        if String(cString: number.objCType) == "c" { return nil }
        let d = number.doubleValue
        guard d >= 0, d <= 9.0e15, d.rounded() == d else { return nil }
        return Int(d)
    }

    /// The tensor `name`, checked against an expected dtype and shape; errors name the tensor.
    public func tensor(_ name: String, dtype: DType, shape: [Int]) throws(FormatError) -> TensorView {
        guard let t = tensors[name] else { throw FormatError(path, "missing tensor \(name)") }
        guard t.dtype == dtype else { throw FormatError(path, "tensor \(name): dtype \(t.dtype.rawValue), expected \(dtype.rawValue)") }
        guard t.shape == shape else { throw FormatError(path, "tensor \(name): shape \(t.shape), expected \(shape)") }
        return t
    }
}
