#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The C calls by other names: `UpdateLogWriter.open` and `deinit` would shadow them.
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func posixClose(_ fd: Int32) { _ = close(fd) }

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
