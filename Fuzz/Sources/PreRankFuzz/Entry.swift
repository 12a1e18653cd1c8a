import Glibc

/// libFuzzer's entry points. One binary holds every target; `PRERANK_FUZZ_TARGET` (set by
/// scripts/fuzz.sh) names the one this process runs, so a single instrumented build serves all
/// nine and the build stays one link.
///
/// A broken invariant is reported with `FuzzFailure.fail`, which prints the reason and aborts:
/// libFuzzer then saves the input as a crash reproducer, as it does for a trap or an ASan report.

/// Every target: its name (what fuzz.sh and the corpus folder use) and its one-input function.
let targets: [(name: String, run: (UnsafeRawBufferPointer) -> Void)] = [
    ("http", HTTPTarget.run),
    ("chunked", ChunkedTarget.run),
    ("request", RequestTarget.run),
    ("items", ItemsTarget.run),
    ("updates", UpdatesTarget.run),
    ("safetensors", SafetensorsTarget.run),
    ("model", ModelTarget.run),
    ("config", ConfigTarget.run),
    ("gzip", GzipTarget.run),
]

nonisolated(unsafe) var selected: ((UnsafeRawBufferPointer) -> Void)?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = getenv("PRERANK_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    if name == "--list" || name.isEmpty {
        for t in targets { print(t.name) }
        if name.isEmpty {
            fputs("Error: set PRERANK_FUZZ_TARGET to one of the names above\n", stderr)
            exit(2)
        }
        exit(0)
    }
    guard let t = targets.first(where: { $0.name == name }) else {
        fputs("Error: unknown fuzz target \(name) (known: \(targets.map(\.name).joined(separator: ", ")))\n", stderr)
        exit(2)
    }
    selected = t.run
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    selected?(bytes)
    return 0
}

/// A broken invariant: print why and abort, so libFuzzer keeps the input.
enum FuzzFailure {
    static func fail(_ target: String, _ message: String) -> Never {
        fputs("\n==prerank-fuzz== INVARIANT BROKEN [\(target)]: \(message)\n", stderr)
        abort()
    }
}

/// Reads structured values from the fuzzer's bytes; past the end every read gives zeros, so a
/// target never needs to check lengths.
struct FuzzReader {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { position >= bytes.count }
    var remaining: Int { max(0, bytes.count - position) }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16() -> Int { Int(byte()) | Int(byte()) << 8 }

    mutating func take(_ n: Int) -> [UInt8] {
        let k = min(n, remaining)
        defer { position += k }
        return Array(bytes[position..<(position + k)])
    }

    mutating func rest() -> [UInt8] { take(remaining) }
}

/// CPU time of this thread (other processes on a busy machine do not inflate it).
func threadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A scratch file for the loaders that take a path (one per process, rewritten per input).
enum ScratchFile {
    static let directory: String = {
        let base = getenv("PRERANK_FUZZ_SCRATCH").map { String(cString: $0) } ?? "/tmp"
        let dir = "\(base)/prerank-fuzz-\(getpid())"
        mkdir(dir, 0o700)
        return dir
    }()

    /// Writes `bytes` to `directory/name` and returns the path.
    static func write(_ bytes: [UInt8], name: String) -> String {
        let path = "\(directory)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { FuzzFailure.fail("scratch", "cannot create \(path)") }
        var written = 0
        bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n <= 0 { break }
                written += n
            }
        }
        close(fd)
        return path
    }
}
