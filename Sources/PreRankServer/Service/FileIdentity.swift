#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which file a path names right now: device, inode, size and modification time.
///
/// Writers of models and indexes write a new file and `rename` it over the old one (never in
/// place), so a new file has a new inode; size and mtime (to the nanosecond) also catch an
/// in-place rewrite. A reload compares identities to decide whether a file is unchanged and the
/// loaded copy can be shared instead of read and mapped again.
public struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modifiedSeconds: Int64
    public var modifiedNanoseconds: Int64

    /// The identity of the file at `path` (symbolic links followed), or nil when it cannot be
    /// stat'ed; the loader then reports why.
    public static func of(_ path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        #if canImport(Glibc)
        let mtime = st.st_mtim
        #else
        let mtime = st.st_mtimespec
        #endif
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                            modifiedSeconds: Int64(mtime.tv_sec), modifiedNanoseconds: Int64(mtime.tv_nsec))
    }

    public var description: String { "dev \(device) inode \(inode) size \(size) mtime \(modifiedSeconds).\(modifiedNanoseconds)" }
}
