import CZlib
import Foundation
import Logging

/// The files of the request log: the current plain `.jsonl` file (touched only by the writer
/// thread) and finished files, compressed and pruned on a serial utility queue.
final class RequestLogFiles: @unchecked Sendable {
    static let prefix = "requests-"
    static let plainSuffix = ".jsonl"
    static let gzipSuffix = ".jsonl.gz"
    static let tmpSuffix = ".gz.tmp"

    private let config: RequestLogConfig
    private let metrics: MetricsRegistry
    private let logger = Logger(label: "prerank.request-log")
    private let gzipQueue = DispatchQueue(label: "prerank.request-log.gzip", qos: .utility)

    // Confined to the writer thread (and to `init`/`recoverLeftovers`, before it starts).
    private var fd: Int32 = -1
    private var currentPath = ""
    private var currentBytes = 0
    /// When the current file was opened (for `maxFileAgeSeconds`).
    private var openedAt = Date.distantPast
    private var seq = 0
    private var lastErrorLog = Date.distantPast

    init(config: RequestLogConfig, metrics: MetricsRegistry) {
        self.config = config
        self.metrics = metrics
    }

    // MARK: writer thread

    /// Appends lines (each ending in a newline), finishing the file before one would pass
    /// `maxFileBytes` (a single larger line gets a file of its own).
    func append(_ lines: [[UInt8]]) {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(min(lines.reduce(0) { $0 + $1.count }, 1 << 20))
        var inBuffer = 0
        for line in lines {
            if fd >= 0 && currentBytes + buffer.count > 0 && currentBytes + buffer.count + line.count > config.maxFileBytes {
                write(&buffer, lines: &inBuffer)
                finishCurrent()
            }
            if fd < 0 && !openNext() {
                metrics.recordRequestLog(dropped: 1)
                continue
            }
            buffer.append(contentsOf: line)
            inBuffer += 1
            if buffer.count >= 1 << 20 { write(&buffer, lines: &inBuffer) }
        }
        write(&buffer, lines: &inBuffer)
    }

    /// fsync of the current file (finished files are fsynced by compression).
    func sync() {
        if fd >= 0 { _ = fsync(fd) }
    }

    /// When the current file reaches `maxFileAgeSeconds` (nil: no file open, or no age limit).
    var rotationDue: Date? {
        guard fd >= 0, let age = config.maxFileAgeSeconds else { return nil }
        return openedAt.addingTimeInterval(age)
    }

    /// Finishes the current file if it is older than `maxFileAgeSeconds`.
    func finishIfOld(now: Date = Date()) {
        if let due = rotationDue, now >= due { finishCurrent() }
    }

    /// Closes the current file and queues its compression.
    func finishCurrent() {
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = Glibc.close(fd)
        fd = -1
        let path = currentPath
        currentBytes = 0
        gzipQueue.async { self.compressAndPrune(plain: path) }
    }

    func waitForCompression() {
        gzipQueue.sync {}
    }

    private func write(_ buffer: inout [UInt8], lines: inout Int) {
        guard !buffer.isEmpty else { return }
        defer { buffer.removeAll(keepingCapacity: true); lines = 0 }
        let ok = RequestLogGzip.writeAll(fd, buffer)
        if ok {
            currentBytes += buffer.count
            metrics.recordRequestLog(written: lines)
        } else {
            let err = String(cString: strerror(errno))
            complain("request log: write to \(currentPath) failed (\(err)); \(lines) lines dropped")
            metrics.recordRequestLog(dropped: lines)
            // Start afresh: the finished part of the file is still kept and compressed.
            finishCurrent()
        }
    }

    private func openNext() -> Bool {
        do {
            try FileManager.default.createDirectory(atPath: config.dir, withIntermediateDirectories: true)
        } catch {
            complain("request log: cannot create \(config.dir): \(error)")
            return false
        }
        let stamp = RequestLogFiles.fileStamp(Date())
        for _ in 0..<1000 {
            seq += 1
            let name = RequestLogFiles.prefix + stamp + "-" + RequestLogFiles.pad(seq, 6) + RequestLogFiles.plainSuffix
            let path = (config.dir as NSString).appendingPathComponent(name)
            let f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if f >= 0 {
                fd = f
                currentPath = path
                currentBytes = 0
                openedAt = Date()
                return true
            }
            if errno != EEXIST {
                complain("request log: cannot create \(path): \(String(cString: strerror(errno)))")
                return false
            }
        }
        return false
    }

    private func complain(_ message: String) {
        // At most one error line per 10 s: a full disk must not flood stderr.
        if Date().timeIntervalSince(lastErrorLog) >= 10 {
            lastErrorLog = Date()
            logger.error("\(message)")
        }
    }

    // MARK: compression and retention (gzipQueue)

    private func compressAndPrune(plain: String) {
        compress(plain: plain)
        prune()
    }

    private func compress(plain: String) {
        let gz = String(plain.dropLast(RequestLogFiles.plainSuffix.count)) + RequestLogFiles.gzipSuffix
        let tmp = plain + RequestLogFiles.tmpSuffix
        do {
            try RequestLogGzip.compressFile(from: plain, to: tmp)
            guard rename(tmp, gz) == 0 else { throw RequestLogGzip.Error("rename \(tmp): \(String(cString: strerror(errno)))") }
            unlink(plain)
            let dirFD = open(config.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dirFD >= 0 { _ = fsync(dirFD); _ = Glibc.close(dirFD) }
        } catch {
            // The plain file stays; the next start compresses it.
            unlink(tmp)
            logger.error("request log: cannot compress \(plain): \(error)")
        }
    }

    /// Deletes the oldest finished files beyond `maxFiles` (names sort by time, then sequence).
    private func prune() {
        guard config.maxFiles > 0 else { return }
        let finished = RequestLogFiles.list(config.dir).filter { $0.hasSuffix(RequestLogFiles.gzipSuffix) }.sorted()
        guard finished.count > config.maxFiles else { return }
        for name in finished.prefix(finished.count - config.maxFiles) {
            unlink((config.dir as NSString).appendingPathComponent(name))
        }
    }

    /// Before the writer starts: removes half-written `.gz.tmp` files, deletes plain files whose
    /// `.gz` exists (a crash between rename and unlink), queues compression of the other plain
    /// files an earlier process left, and continues the sequence numbers after theirs.
    func recoverLeftovers() {
        let names = RequestLogFiles.list(config.dir)
        let set = Set(names)
        for name in names {
            if let s = RequestLogFiles.sequence(of: name) { seq = max(seq, s) }
            let path = (config.dir as NSString).appendingPathComponent(name)
            if name.hasSuffix(RequestLogFiles.tmpSuffix) {
                unlink(path)
            } else if name.hasSuffix(RequestLogFiles.plainSuffix) {
                let gzName = String(name.dropLast(RequestLogFiles.plainSuffix.count)) + RequestLogFiles.gzipSuffix
                if set.contains(gzName) {
                    unlink(path)
                } else {
                    gzipQueue.async { self.compressAndPrune(plain: path) }
                }
            }
        }
    }

    static func list(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(prefix) }
    }

    /// `requests-20261123T020304Z-000042.jsonl[.gz]` → 42.
    static func sequence(of name: String) -> Int? {
        var base = name
        for suffix in [tmpSuffix, gzipSuffix, plainSuffix] where base.hasSuffix(suffix) {
            base = String(base.dropLast(suffix.count))
            if suffix == tmpSuffix, base.hasSuffix(plainSuffix) { base = String(base.dropLast(plainSuffix.count)) }
            break
        }
        guard let dash = base.lastIndex(of: "-") else { return nil }
        return Int(base[base.index(after: dash)...])
    }

    /// `20261123T020304Z` (UTC).
    static func fileStamp(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        return pad(Int(tm.tm_year) + 1900, 4) + pad(Int(tm.tm_mon) + 1, 2) + pad(Int(tm.tm_mday), 2) + "T"
            + pad(Int(tm.tm_hour), 2) + pad(Int(tm.tm_min), 2) + pad(Int(tm.tm_sec), 2) + "Z"
    }

    static func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

