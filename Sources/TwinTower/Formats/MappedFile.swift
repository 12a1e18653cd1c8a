#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file.
///
/// The mapping outlives the file descriptor (closed right after `mmap`) and is unmapped when the
/// last reference goes away. Files are never rewritten in place (writers use a temporary file and
/// `rename`), so a mapped file cannot shrink under us and raise SIGBUS.
public final class MappedFile: @unchecked Sendable {
    // Immutable after init: safe to share across threads.
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let mappedLength: Int

    /// - parameters:
    ///   - path: the file to map.
    ///   - populate: fault every page in now (`MAP_POPULATE`), so the first request does not pay
    ///     ~15 ms of page faults on 10k random rows. Used for the item index before `/readyz`.
    public init(path: String, populate: Bool = false) throws(FormatError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError(path, "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FormatError(path, "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            // mmap of length 0 fails; an empty file is represented by an empty buffer.
            self.bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            self.mappedLength = 0
            return
        }
        var flags = MAP_PRIVATE
        #if os(Linux)
        if populate { flags |= MAP_POPULATE }
        #endif
        guard let base = mmap(nil, size, PROT_READ, flags, fd, 0), base != MAP_FAILED else {
            throw FormatError(path, "cannot map: \(String(cString: strerror(errno)))")
        }
        self.bytes = UnsafeRawBufferPointer(start: base, count: size)
        self.mappedLength = size
    }

    deinit {
        if let base = bytes.baseAddress, mappedLength > 0 {
            munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
        }
    }
}
