#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Anonymous memory, 2 MiB-aligned and advised for transparent huge pages, for the tables that
/// requests read at random: the index vectors and the id table.
///
/// Why: 10k random rows of a 1M-item index touch ~10k distinct 4 KiB pages, far more than the
/// TLB covers, so with small pages every row also pays a page walk. A file mapping is mapped
/// with 2 MiB entries only where the page cache happens to hold 2 MiB folios, which depends on
/// how the file was last read (measured on this box: 27 % to 97 % of the same file). A copy in
/// anonymous huge pages does not depend on that (docs/PERFORMANCE.md "Huge pages"). Where the
/// kernel gives no huge pages (THP `never`), the copy still works, with small pages.
public final class HugePageBuffer: @unchecked Sendable {
    // Written only between init and `seal()`, by the creating thread; read-only after.
    public let base: UnsafeMutableRawPointer
    public let count: Int
    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int

    public static let hugePageSize = 2 << 20

    /// Zero-filled memory for `count` bytes, or nil when the mapping fails.
    public init?(count: Int) {
        guard count > 0 else { return nil }
        let huge = Self.hugePageSize
        let length = (count + huge - 1) / huge * huge + huge  // room to align the start
        let raw = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let raw, raw != MAP_FAILED else { return nil }
        let aligned = (Int(bitPattern: raw) + huge - 1) / huge * huge
        base = UnsafeMutableRawPointer(bitPattern: aligned)!
        self.count = count
        mapping = raw
        mappingLength = length
        #if os(Linux)
        _ = madvise(base, (count + huge - 1) / huge * huge, MADV_HUGEPAGE)
        #endif
    }

    /// A copy of `bytes`, sealed read-only; nil when the mapping fails.
    public convenience init?(copying bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress else { return nil }
        self.init(count: bytes.count)
        base.copyMemory(from: source, byteCount: bytes.count)
        seal()
    }

    /// Drops this process's mapping of the whole pages inside `bytes` (a private, read-only file
    /// mapping that has just been copied), so RSS counts the copy once. The page cache keeps the
    /// file; touching the range again simply faults it back in.
    public static func dropResidentPages(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + page - 1) / page * page
        let end = (Int(bitPattern: base) + bytes.count) / page * page
        guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(p, end - start, MADV_DONTNEED)
    }

    /// Makes the buffer read-only (a stray write traps instead of corrupting the index).
    public func seal() {
        let huge = Self.hugePageSize
        _ = mprotect(base, (count + huge - 1) / huge * huge, PROT_READ)
    }

    deinit { munmap(mapping, mappingLength) }
}
