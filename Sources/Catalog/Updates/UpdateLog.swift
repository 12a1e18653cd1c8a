#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZlib
import Foundation

/// The durable update log of the live catalog (SPEC §1 "Update log", `model.updates`): one
/// record per `POST /admin/items` change, appended and fsync'd before the change is answered,
/// replayed on start and on reload on top of the base index (docs/UPDATES.md).
///
/// File layout (all integers little-endian):
///
///     magic    8 bytes  "PRKUPD01"
///     record*:
///       length      u32   payload bytes
///       sequence    u64   strictly increasing from one record to the next
///       payload_crc u32   zlib crc32 of the payload
///       header_crc  u32   zlib crc32 of the 16 bytes before it
///       payload     length bytes: the change as JSON (`ItemChangeCodec`)
///
/// Why this shape: the length comes first so a reader can step over records without parsing
/// them; the header has its own CRC, so a flipped length is caught before it sends the reader to
/// a wrong offset, and a reader can recognise the start of a good record anywhere in the file;
/// the sequence lets a base index built from the log (`build-index --updates`, metadata
/// `updates_sequence`) skip what it already holds.
///
/// A damaged record (short header, bad header CRC, a length past the end, bad payload CRC) is a
/// **torn tail** when no valid record header follows it anywhere in the file (when its own header
/// is valid, the search starts after the bytes that header claims: they are its payload, whatever
/// they hold): a crash can tear only the last record (one is fsync'd before the next is written),
/// whatever bytes the tear left (a prefix, zeros, garbage). It is dropped with a warning and everything before it kept. A
/// damaged record *followed by a valid one* is corruption, and refused: dropping it would silently
/// lose the changes after it.
public enum UpdateLog {
    public static let magic: [UInt8] = Array("PRKUPD01".utf8)
    public static let headerBytes = 20
    /// A record larger than this is corruption (a change is bounded by `server.max_body_bytes`).
    public static let maxPayload = 1 << 30

    public struct Record: Sendable, Equatable {
        public var sequence: UInt64
        public var payload: [UInt8]
        /// Byte offset of the record in the file.
        public var offset: Int
    }

    /// What reading a log found.
    public struct Contents: Sendable {
        public var records: [Record]
        /// Bytes of the file that hold valid data (magic and whole records); appends go here.
        public var validEnd: Int
        /// Set when a torn last record was dropped: why, and at which offset.
        public var torn: String?
        public var lastSequence: UInt64 { records.last?.sequence ?? 0 }
    }

    /// The bytes of one record.
    public static func encode(sequence: UInt64, payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(headerBytes + payload.count)
        append(UInt32(payload.count), to: &out)
        append(sequence, to: &out)
        append(crc(payload[...]), to: &out)
        append(crc(out[0..<16]), to: &out)
        out.append(contentsOf: payload)
        return out
    }

    /// Reads and checks a whole log; a missing or empty file is an empty log.
    public static func read(path: String) throws(UpdateLogError) -> Contents {
        guard FileManager.default.fileExists(atPath: path) else { return Contents(records: [], validEnd: 0, torn: nil) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UpdateLogError(path: path, message: "cannot read the file")
        }
        return try parse([UInt8](data), path: path)
    }

    /// `read` for the tools (`build-index --updates`, `inspect --updates`): a missing file is an
    /// error unless `allowMissing` (a mistyped path would otherwise fold nothing and exit 0).
    public static func read(path: String, allowMissing: Bool) throws(UpdateLogError) -> Contents {
        if !allowMissing, !FileManager.default.fileExists(atPath: path) {
            throw UpdateLogError(path: path, message: "no such update log (pass --allow-missing-updates when an absent log means no changes)")
        }
        return try read(path: path)
    }

    /// Whether the server could open the log at `path` for appending (`validate-config`): an
    /// existing file must be readable and writable, a missing one needs a writable directory (a
    /// read-only volume or a sandboxed unit would otherwise pass the check and fail at `serve`).
    public static func checkWritable(path: String) throws(UpdateLogError) {
        if FileManager.default.fileExists(atPath: path) {
            guard access(path, R_OK | W_OK) == 0 else {
                throw UpdateLogError(path: path, message: "not writable by this user: \(String(cString: strerror(errno)))")
            }
            return
        }
        let dir = (path as NSString).deletingLastPathComponent
        let parent = dir.isEmpty ? "." : dir
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw UpdateLogError(path: path, message: "its directory \(parent) does not exist")
        }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw UpdateLogError(path: path, message: "cannot create it: directory \(parent) is not writable by this user (\(String(cString: strerror(errno))))")
        }
    }

    /// Parses log bytes (`read` without the file).
    public static func parse(_ bytes: [UInt8], path: String) throws(UpdateLogError) -> Contents {
        if bytes.count < magic.count {
            // A log torn while it was being created: its magic is incomplete.
            guard Array(magic.prefix(bytes.count)) == bytes || bytes.allSatisfy({ $0 == 0 }) else {
                throw UpdateLogError(path: path, message: "not an update log (bad magic)")
            }
            return Contents(records: [], validEnd: 0, torn: bytes.isEmpty ? nil : "an incomplete file header of \(bytes.count) bytes")
        }
        guard Array(bytes[0..<magic.count]) == magic else {
            throw UpdateLogError(path: path, message: "not an update log (bad magic)")
        }
        var records: [Record] = []
        var offset = magic.count
        var torn: String?
        while offset < bytes.count {
            var damage: String?
            let remaining = bytes.count - offset
            var end = bytes.count
            // Where a valid record could start after a damaged one: right after its offset when
            // its header is bad (its length cannot be trusted), else after the bytes its valid
            // header claims, which are its own payload even if they happen to hold a record's
            // bytes (a change may carry any text; found by the `updates` fuzz target).
            var searchFrom = offset
            if remaining < headerBytes {
                damage = "header cut short (\(remaining) of \(headerBytes) bytes)"
            } else if !headerIsValid(bytes, at: offset) {
                damage = "header CRC mismatch"
            } else {
                let length = Int(load(UInt32.self, bytes, offset))
                end = offset + headerBytes + length
                searchFrom = end - 1
                if length > maxPayload || end > bytes.count {
                    damage = "length \(length) runs past the end of the file"
                } else if crc(bytes[(offset + headerBytes)..<end]) != load(UInt32.self, bytes, offset + 12) {
                    damage = "payload CRC mismatch"
                }
            }
            if let damage {
                if let next = nextValidHeader(bytes, after: searchFrom) {
                    throw UpdateLogError(path: path, message: "record at byte \(offset): \(damage), and a valid record follows at byte \(next): the log is corrupt, not torn")
                }
                torn = "record at byte \(offset): \(damage)"
                break
            }
            let sequence = load(UInt64.self, bytes, offset + 4)
            if let last = records.last, sequence <= last.sequence {
                throw UpdateLogError(path: path, message: "record at byte \(offset): sequence \(sequence) after \(last.sequence)")
            }
            records.append(Record(sequence: sequence, payload: Array(bytes[(offset + headerBytes)..<end]), offset: offset))
            offset = end
        }
        let validEnd = torn == nil ? bytes.count : (records.last.map { $0.offset + headerBytes + $0.payload.count } ?? magic.count)
        return Contents(records: records, validEnd: validEnd, torn: torn)
    }

    static func headerIsValid(_ bytes: [UInt8], at offset: Int) -> Bool {
        offset + headerBytes <= bytes.count && crc(bytes[offset..<(offset + 16)]) == load(UInt32.self, bytes, offset + 16)
    }

    /// The first offset after `offset` where a record header with a valid CRC starts (only on
    /// the error path: a 32-bit CRC matching by chance is a 2^-32 event per offset).
    static func nextValidHeader(_ bytes: [UInt8], after offset: Int) -> Int? {
        var o = offset + 1
        while o + headerBytes <= bytes.count {
            if headerIsValid(bytes, at: o) { return o }
            o += 1
        }
        return nil
    }

    static func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        UInt32(truncatingIfNeeded: bytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, UInt32($0.count)) })
    }

    private static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(bytes[offset + i]) << (8 * i) }
        return v
    }
}
