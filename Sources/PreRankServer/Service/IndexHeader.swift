import Foundation
import TwinTower

/// The `__metadata__` of a safetensors file, read with `pread` from its header alone.
///
/// A reload uses it to confirm that an index whose file identity is unchanged still declares the
/// model fingerprint it was shared under, without mapping (or faulting in) hundreds of MB.
enum IndexHeader {
    /// The metadata strings, or nil when the file cannot be read or its header is not a
    /// safetensors header (the full load that follows reports the reason).
    static func metadata(path: String) -> [String: String]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var length: UInt64 = 0
        guard pread(fd, &length, 8, 0) == 8 else { return nil }
        length = UInt64(littleEndian: length)
        guard length > 0, length <= UInt64(SafetensorsFile.maxHeaderBytes) else { return nil }
        var header = [UInt8](repeating: 0, count: Int(length))
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(length), 8) }
        guard read == Int(length) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(header)) as? [String: Any],
              let meta = object["__metadata__"] as? [String: Any] else { return nil }
        return meta.compactMapValues { $0 as? String }
    }
}
