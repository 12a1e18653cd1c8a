import Foundation

/// Tensor data to be written, in one of the element types prerank produces.
public enum TensorData: Sendable {
    case f32([Float])
    case f16([Float16])
    case i8([Int8])
    case i64([Int64])

    public var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .i8: return .i8
        case .i64: return .i64
        }
    }

    var count: Int {
        switch self {
        case .f32(let a): return a.count
        case .f16(let a): return a.count
        case .i8(let a): return a.count
        case .i64(let a): return a.count
        }
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case .f32(let a): return try a.withUnsafeBytes(body)
        case .f16(let a): return try a.withUnsafeBytes(body)
        case .i8(let a): return try a.withUnsafeBytes(body)
        case .i64(let a): return try a.withUnsafeBytes(body)
        }
    }
}

/// A named tensor to write.
public struct TensorEntry: Sendable {
    public var name: String
    public var shape: [Int]
    public var data: TensorData

    public init(_ name: String, shape: [Int], _ data: TensorData) {
        self.name = name
        self.shape = shape
        self.data = data
    }
}

/// Writes safetensors files laid out for in-place reads from a mapping.
///
/// - The JSON header is padded with spaces so the data region starts on a 64-byte boundary.
/// - Tensors are written largest element size first (ties by name), so with a 64-byte-aligned
///   region every tensor starts at a multiple of its own element size: no gaps, yet naturally
///   aligned. The result stays a valid file for the official reader.
/// - The file is written to a temporary name and renamed, so a reader that has the old file
///   mapped never sees it change (no SIGBUS), and a crash leaves no half file under the name.
public enum SafetensorsWriter {
    public static func write(_ entries: [TensorEntry], metadata: [String: String] = [:], to path: String) throws(FormatError) {
        for e in entries where e.shape.reduce(1, *) != e.data.count {
            throw FormatError(path, "tensor \(e.name): \(e.data.count) values do not fill shape \(e.shape)")
        }
        let ordered = entries.sorted {
            ($0.data.dtype.size, $1.name) > ($1.data.dtype.size, $0.name)
        }
        var header = "{"
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { "\(JSONString.quote($0)):\(JSONString.quote(metadata[$0] ?? ""))" }
                .joined(separator: ",")
            header += "}"
        }
        var offset = 0
        for (i, e) in ordered.enumerated() {
            let size = e.data.count * e.data.dtype.size
            if i > 0 || !metadata.isEmpty { header += "," }
            header += "\(JSONString.quote(e.name)):{\"dtype\":\"\(e.data.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 64 != 0 { headerBytes.append(0x20) }

        let tmp = path + ".tmp-\(getpid())"
        guard let file = fopen(tmp, "wb") else {
            throw FormatError(path, "cannot create \(tmp): \(String(cString: strerror(errno)))")
        }
        var ok = true
        var length = UInt64(headerBytes.count).littleEndian
        ok = ok && withUnsafeBytes(of: &length) { fwrite($0.baseAddress, 1, 8, file) == 8 }
        ok = ok && headerBytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        for e in ordered where ok {
            ok = e.data.withBytes { buf in buf.count == 0 || fwrite(buf.baseAddress, 1, buf.count, file) == buf.count }
        }
        ok = (fclose(file) == 0) && ok
        guard ok else {
            unlink(tmp)
            throw FormatError(path, "write failed: \(String(cString: strerror(errno)))")
        }
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw FormatError(path, "cannot rename into place: \(String(cString: strerror(errno)))")
        }
    }
}

/// JSON string literals (RFC 8259 escapes for quotes, backslashes and control characters): the
/// one implementation every JSON writer in prerank uses.
public enum JSONString {
    public static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
