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

// The C calls by other names: `UpdateLogWriter.open` and `deinit` would shadow them.
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func posixClose(_ fd: Int32) { _ = close(fd) }

/// A log that cannot be read or written; `path` names the file.
public struct UpdateLogError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// Appends records to one update log. Opening it takes an exclusive `flock` (one writer per
/// log: a second server on the same file is refused) and drops a torn tail from the file (so new
/// records never follow garbage); every append is fsync'd before it returns.
///
/// The writer remembers which file it has open (device and inode), how long it left it and its
/// last bytes, so `check()` can tell that the file at `path` is no longer the one it writes: moved
/// or rotated away, replaced, truncated (`: > updates.log`) or rewritten in place. Appending
/// through the old descriptor would then strand acknowledged changes in a file no restart reads
/// (issue #21); the caller (`LiveCatalog`) checks before every append and decides what to do.
///
/// Not thread-safe: the server appends from its one serial update queue.
public final class UpdateLogWriter {
    public let path: String
    private var fd: Int32
    private var end: Int
    private let device: UInt64
    private let inode: UInt64
    /// The last bytes of valid log (up to 20), as this writer left them at `end`.
    private var tail: [UInt8]

    /// Opens (creating if missing) and locks the log at `path`, drops a torn tail, and returns
    /// the writer with what the file held (the replay source; the writer keeps none of it).
    public static func open(path: String) throws(UpdateLogError) -> (UpdateLogWriter, UpdateLog.Contents) {
        let fd = posixOpen(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UpdateLogError(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            posixClose(fd)
            throw UpdateLogError(path: path, message: busy
                ? "another process is writing this update log (it holds the lock); each server needs its own model.updates"
                : "cannot lock: \(reason)")
        }
        do throws(UpdateLogError) {
            var bytes = try readAll(fd, path: path)
            let contents = try UpdateLog.parse(bytes, path: path)
            var end = contents.validEnd
            if end == 0 {
                // New (or torn while created): write the magic, and make the file's name durable too.
                guard ftruncate(fd, 0) == 0, writeAll(fd, UpdateLog.magic, at: 0), fsync(fd) == 0 else {
                    throw UpdateLogError(path: path, message: "cannot create: \(String(cString: strerror(errno)))")
                }
                syncDirectory(of: path)
                bytes = UpdateLog.magic
                end = bytes.count
            } else if contents.torn != nil {
                guard ftruncate(fd, off_t(end)) == 0, fsync(fd) == 0 else {
                    throw UpdateLogError(path: path, message: "cannot drop the torn tail: \(String(cString: strerror(errno)))")
                }
            }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw UpdateLogError(path: path, message: "cannot stat: \(String(cString: strerror(errno)))") }
            let writer = UpdateLogWriter(path: path, fd: fd, end: end, device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
                                         tail: Array(bytes[max(0, end - 20)..<end]))
            return (writer, contents)
        } catch {
            posixClose(fd)
            throw error
        }
    }

    private init(path: String, fd: Int32, end: Int, device: UInt64, inode: UInt64, tail: [UInt8]) {
        self.path = path
        self.fd = fd
        self.end = end
        self.device = device
        self.inode = inode
        self.tail = tail
    }

    deinit { if fd >= 0 { posixClose(fd) } }

    /// Closes the file (and so releases the lock) now; the writer must not be used after.
    public func close() {
        if fd >= 0 { posixClose(fd) }
        fd = -1
    }

    /// True when `other` names the file this writer has open (the same device and inode).
    public func isOpen(_ other: String) -> Bool {
        var st = stat()
        return stat(other, &st) == 0 && UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// Appends one record and fsyncs; on failure the file is cut back to where it was.
    public func append(sequence: UInt64, payload: [UInt8]) throws(UpdateLogError) {
        try append(UpdateLog.encode(sequence: sequence, payload: payload))
    }

    /// Appends records (already in log order, after this log's last) with one fsync: a log moved
    /// away is carried over into the fresh one this way.
    public func append(records: [UpdateLog.Record]) throws(UpdateLogError) {
        guard !records.isEmpty else { return }
        try append(records.flatMap { UpdateLog.encode(sequence: $0.sequence, payload: $0.payload) })
    }

    private func append(_ bytes: [UInt8]) throws(UpdateLogError) {
        guard Self.writeAll(fd, bytes, at: end), fdatasync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = ftruncate(fd, off_t(end))
            throw UpdateLogError(path: path, message: "cannot append: \(reason)")
        }
        end += bytes.count
        tail = bytes.count >= 20 ? Array(bytes[(bytes.count - 20)...]) : Array((tail + bytes).suffix(20))
    }

    /// Bytes of valid log on disk.
    public var size: Int { end }

    /// Why the file at `path` is no longer the log this writer left there (nil: it is): gone,
    /// another file, truncated, grown or rewritten by someone else.
    public func check() -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return "no file at the path any more (moved or removed)" }
        guard UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode else {
            return "the path names another file now (moved, rotated or replaced)"
        }
        return ownFileChange()
    }

    /// True when the file this writer has open still holds exactly what it wrote (a log moved
    /// away keeps its inode: its records can be carried into a fresh log at the path).
    public var openFileIsIntact: Bool { ownFileChange() == nil }

    private func ownFileChange() -> String? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "cannot stat the open file: \(String(cString: strerror(errno)))" }
        if Int(st.st_size) < end { return "the file was truncated (\(st.st_size) bytes; this server wrote \(end))" }
        if Int(st.st_size) > end { return "the file grew to \(st.st_size) bytes past the \(end) this server wrote" }
        var read = [UInt8](repeating: 0, count: tail.count)
        let n = read.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(end - tail.count)) }
        return n == tail.count && read == tail ? nil : "the file was rewritten in place"
    }

    /// The log as this writer's open file holds it now (for carrying it into a fresh log).
    public func readBack() throws(UpdateLogError) -> UpdateLog.Contents {
        try UpdateLog.parse(Self.readAll(fd, path: path), path: path)
    }

    private static func readAll(_ fd: Int32, path: String) throws(UpdateLogError) -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw UpdateLogError(path: path, message: "cannot stat: \(String(cString: strerror(errno)))") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                if n == 0 { bytes.removeLast(bytes.count - done); break }
                throw UpdateLogError(path: path, message: "cannot read: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        return bytes
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int) -> Bool {
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
    }

    private static func syncDirectory(of path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        let fd = posixOpen(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        posixClose(fd)
    }
}
