import Foundation
import Testing
import TwinTower
@testable import PreRankServer

@Suite("RequestLog")
struct RequestLogTests {
    static func tempDir(_ tag: String) -> String {
        let dir = NSTemporaryDirectory() + "prerank-reqlog-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.removeItem(atPath: dir)
        return dir
    }

    static func files(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    /// Every line of every file in `dir`, decompressing `.gz` files with zlib.
    static func readAll(_ dir: String) throws -> [String] {
        var lines: [String] = []
        for name in files(dir) {
            let data = try #require(FileManager.default.contents(atPath: dir + "/" + name))
            var bytes = [UInt8](data)
            if name.hasSuffix(".gz") { bytes = try RequestLogGzip.decompress(bytes) }
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.isEmpty || text.hasSuffix("\n"), "\(name) does not end in a newline")
            lines += text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        }
        return lines
    }

    static func metric(_ metrics: MetricsRegistry, _ name: String) -> Int {
        for line in metrics.render().split(separator: "\n") where line.hasPrefix(name + " ") {
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        return -1
    }

    @Test func gzipRoundTrip() throws {
        let text = Array((0..<5000).map { "line \($0) {\"k\":\($0 * 7)}\n" }.joined().utf8)
        let gz = try RequestLogGzip.compress(text)
        #expect(gz.count < text.count / 4)
        #expect(gz[0] == 0x1F && gz[1] == 0x8B)
        #expect(try RequestLogGzip.decompress(gz) == text)
        // Concatenated members decompress as one stream, as gzip -dc does.
        #expect(try RequestLogGzip.decompress(gz + gz) == text + text)
        #expect(try RequestLogGzip.decompress(try RequestLogGzip.compress([])) == [])
        #expect(throws: RequestLogGzip.Error.self) { try RequestLogGzip.decompress(Array(gz.dropLast(10))) }
    }

    @Test func gzipFilesReadByGzipTool() throws {
        let dir = Self.tempDir("tool")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = (0..<20000).map { "{\"n\":\($0)}\n" }.joined()
        _ = FileManager.default.createFile(atPath: dir + "/a.jsonl", contents: Data(text.utf8))
        try RequestLogGzip.compressFile(from: dir + "/a.jsonl", to: dir + "/a.jsonl.gz")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "gzip -dc '\(dir)/a.jsonl.gz'"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(String(decoding: out, as: UTF8.self) == text)
    }

    /// Many threads submit while tiny files force hundreds of rotations; after close every accepted
    /// line is in exactly one finished file, drops are counted, nothing plain is left behind.
    @Test func concurrentSubmitsAcrossRotations() async throws {
        let dir = Self.tempDir("rot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let metrics = MetricsRegistry()
        let log = RequestLog(config: RequestLogConfig(dir: dir, sampleRate: 1, maxFileBytes: 2000, maxFiles: 100_000,
                                                      queueCapacity: 64), metrics: metrics)
        let threads = 8, perThread = 3000
        let accepted = await withTaskGroup(of: [String].self) { group in
            for t in 0..<threads {
                group.addTask {
                    var mine: [String] = []
                    for i in 0..<perThread {
                        let line = "{\"t\":\(t),\"i\":\(i),\"pad\":\"\(String(repeating: "x", count: i % 97))\"}"
                        if log.submit(Array(line.utf8)) { mine.append(line) }
                        if i % 500 == 0 { log.flush() }
                    }
                    return mine
                }
            }
            var all: [String] = []
            for await part in group { all += part }
            return all
        }
        log.close()
        #expect(!log.submit(Array("late".utf8)))

        let written = try Self.readAll(dir)
        let dropped = threads * perThread - accepted.count + 1  // + the late line
        #expect(accepted.count > 0)
        #expect(written.count == accepted.count)
        #expect(Set(written).count == written.count, "a line was written twice")
        #expect(Set(written) == Set(accepted))
        #expect(Self.metric(metrics, "prerank_request_log_lines_total") == accepted.count)
        #expect(Self.metric(metrics, "prerank_request_log_dropped_total") == dropped)

        let names = Self.files(dir)
        #expect(names.count > 50, "expected many rotations, got \(names.count) files")
        #expect(names.allSatisfy { $0.hasPrefix("requests-") && $0.hasSuffix(".jsonl.gz") }, "\(names.filter { !$0.hasSuffix(".gz") })")
        // No file was let grow past max_file_bytes (every line is far smaller than it).
        for name in names {
            let bytes = try RequestLogGzip.decompress([UInt8](try #require(FileManager.default.contents(atPath: dir + "/" + name))))
            #expect(bytes.count <= 2000)
        }
        // Order within one thread is preserved across files (names sort by time, then sequence).
        var lastByThread: [Int: Int] = [:]
        for line in written {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let t = try #require(obj["t"] as? Int), i = try #require(obj["i"] as? Int)
            #expect(i > lastByThread[t, default: -1])
            lastByThread[t] = i
        }
    }

    /// A full queue drops instead of blocking: with the writer unable to keep up (capacity 1),
    /// submits still return at once and the counts add up.
    @Test func fullQueueDropsAndCounts() throws {
        let dir = Self.tempDir("drop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let metrics = MetricsRegistry()
        let log = RequestLog(config: RequestLogConfig(dir: dir, sampleRate: 1, maxFileBytes: 1 << 20, maxFiles: 10,
                                                      queueCapacity: 1), metrics: metrics)
        var ok = 0
        let start = Date()
        for i in 0..<20000 where log.submit(Array("{\"i\":\(i)}".utf8)) { ok += 1 }
        #expect(Date().timeIntervalSince(start) < 5)
        log.close()
        #expect(try Self.readAll(dir).count == ok)
        #expect(Self.metric(metrics, "prerank_request_log_dropped_total") == 20000 - ok)
        #expect(Self.metric(metrics, "prerank_request_log_lines_total") == ok)
    }

    @Test func flushPutsLinesOnDiskWithoutClosing() throws {
        let dir = Self.tempDir("flush")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = RequestLog(config: RequestLogConfig(dir: dir, sampleRate: 1, maxFileBytes: 1 << 20, maxFiles: 10),
                             metrics: MetricsRegistry())
        for i in 0..<100 { #expect(log.submit(Array("{\"i\":\(i)}\n".utf8))) }
        log.flush()
        #expect(log.pending == 0)
        let names = Self.files(dir)
        #expect(names.count == 1 && names[0].hasSuffix(".jsonl"))
        #expect(try Self.readAll(dir).count == 100)
        log.flush()  // nothing new: returns at once
        log.close()
        log.close()  // idempotent
        log.flush()
        #expect(Self.files(dir).count == 1 && Self.files(dir)[0].hasSuffix(".jsonl.gz"))
        #expect(try Self.readAll(dir) == (0..<100).map { "{\"i\":\($0)}" })
    }

    @Test func retentionKeepsNewestFiles() throws {
        let dir = Self.tempDir("keep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = RequestLog(config: RequestLogConfig(dir: dir, sampleRate: 1, maxFileBytes: 100, maxFiles: 3,
                                                      queueCapacity: 10_000), metrics: MetricsRegistry())
        // 40-byte lines, two per file: 50 files made, the last 3 kept.
        for i in 0..<100 { log.submit(Array(("{\"i\":\(String(format: "%04d", i)),\"p\":\"" + String(repeating: "y", count: 22) + "\"}").utf8)) }
        log.close()
        let names = Self.files(dir)
        #expect(names.count == 3)
        let lines = try Self.readAll(dir)
        #expect(lines.count == 6)
        #expect(lines.first?.hasPrefix("{\"i\":0094") == true)
        #expect(lines.last?.hasPrefix("{\"i\":0099") == true)
    }

    /// `max_file_age_s`: a file is finished once old enough even when no further line comes (a
    /// quiet server), and a busy one by size as before (issue #27: rotation was by size only).
    @Test func filesAreFinishedByAgeOnAQuietServer() throws {
        let dir = Self.tempDir("age")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = RequestLogConfig(dir: dir, sampleRate: 1, maxFileBytes: 1 << 20, maxFiles: 10)
        config.maxFileAgeSeconds = 1
        let log = RequestLog(config: config, metrics: MetricsRegistry())
        log.submit(Array("{\"n\":1}".utf8))
        log.flush()
        // No more lines: the writer wakes at the file's age limit, finishes and gzips it.
        let deadline = Date().addingTimeInterval(10)
        func finished() -> Bool { let f = Self.files(dir); return f.count == 1 && f[0].hasSuffix(".jsonl.gz") }
        while Date() < deadline && !finished() { Thread.sleep(forTimeInterval: 0.05) }
        #expect(Self.files(dir).count == 1 && Self.files(dir).allSatisfy { $0.hasSuffix(".jsonl.gz") }, "\(Self.files(dir))")
        log.submit(Array("{\"n\":2}".utf8))
        log.close()
        #expect(Self.files(dir).count == 2)
        #expect(Set(try Self.readAll(dir)) == ["{\"n\":1}", "{\"n\":2}"])
        #expect(RequestLogConfig(dir: "d").maxFileAgeSeconds == nil)
    }

    /// A plain file left by a crashed process is compressed at the next start, and the new
    /// process's files sort after it.
    @Test func recoversLeftoverPlainFiles() throws {
        let dir = Self.tempDir("recover")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/requests-20990101T000000Z-000007.jsonl", contents: Data("{\"old\":1}\n".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/requests-20990101T000000Z-000006.jsonl.gz.tmp", contents: Data("junk".utf8))
        let log = RequestLog(config: RequestLogConfig(dir: dir, sampleRate: 1, maxFileBytes: 1000, maxFiles: 10),
                             metrics: MetricsRegistry())
        log.submit(Array("{\"new\":1}".utf8))
        log.close()
        let names = Self.files(dir)
        #expect(names.contains("requests-20990101T000000Z-000007.jsonl.gz"))
        #expect(names.count == 2)
        #expect(names.allSatisfy { $0.hasSuffix(".jsonl.gz") })
        #expect(names.contains { $0.hasSuffix("-000008.jsonl.gz") })
        #expect(Set(try Self.readAll(dir)) == ["{\"old\":1}", "{\"new\":1}"])
    }

    @Test func samplingIsDeterministicByRequestIDAndHonoursTheRate() {
        let log = RequestLog(config: RequestLogConfig(dir: Self.tempDir("sample"), sampleRate: 0.1), metrics: MetricsRegistry())
        defer { log.close() }
        let n = 100_000
        var hits = 0
        for i in 0..<n where log.shouldSample(requestID: "r-\(i)") { hits += 1 }
        #expect(abs(Double(hits) / Double(n) - 0.1) < 0.006)
        for i in 0..<1000 { #expect(log.shouldSample(requestID: "r-\(i)") == log.shouldSample(requestID: "r-\(i)")) }
        var random = 0
        for _ in 0..<n where log.shouldSample(requestID: nil) { random += 1 }
        #expect(abs(Double(random) / Double(n) - 0.1) < 0.006)
        #expect(RequestLog.sample(requestID: "x", rate: 1))
        #expect(!RequestLog.sample(requestID: "x", rate: 0))
        #expect(!RequestLog.sample(requestID: nil, rate: 0))
        // Nested rates select nested sets: raising the rate only adds requests.
        for i in 0..<5000 where RequestLog.sample(requestID: "q\(i)", rate: 0.05) {
            #expect(RequestLog.sample(requestID: "q\(i)", rate: 0.2))
        }
    }

    @Test func lineEncoding() throws {
        let line = RequestLogLine.encode(
            time: 1_795_399_384.1239, requestID: "r-\"1\"", modelVersion: "v1", arm: "canary",
            fusion: (formula: "additive", alpha: 1, beta: 20, gamma: 0.1),
            user: ["user_id": .string("u42"), "age": .number(31), "segment": .integer(7)],
            query: ["query_terms": .array([.string("red"), .string("shoes")]), "missing": .null],
            candidates: [1001, 1002, 1003], relevance: [2, 0, 1],
            items: [(id: 1003, score: 0.0871, probabilities: [0.061, 0.02, 0.0013]),
                    (id: 1001, score: .nan, probabilities: [0.5, 0.25, 0.125])],
            tasks: ["ctr", "atcr", "ctcvr"], partial: true)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") })
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.hasPrefix("{\"time\":\"2026-11-23T02:03:04.123Z\",\"request_id\":\"r-\\\"1\\\"\",\"model_version\":\"v1\",\"arm\":\"canary\""))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(obj["request_id"] as? String == "r-\"1\"")
        let fusion = try #require(obj["fusion"] as? [String: Any])
        #expect(fusion["formula"] as? String == "additive")
        #expect((fusion["beta"] as? NSNumber)?.doubleValue == 20)
        #expect((fusion["gamma"] as? NSNumber)?.doubleValue == 0.1)
        let user = try #require(obj["user"] as? [String: Any])
        #expect(user["user_id"] as? String == "u42")
        #expect((user["age"] as? NSNumber)?.doubleValue == 31)
        #expect(text.contains("\"age\":31.0"))
        #expect((user["segment"] as? NSNumber)?.int64Value == 7)
        let query = try #require(obj["query"] as? [String: Any])
        #expect(query["query_terms"] as? [String] == ["red", "shoes"])
        #expect(query["missing"] is NSNull)
        #expect((obj["candidates"] as? [NSNumber])?.map(\.int64Value) == [1001, 1002, 1003])
        #expect((obj["relevance"] as? [NSNumber])?.map(\.doubleValue) == [2, 0, 1])
        let items = try #require(obj["items"] as? [[String: Any]])
        #expect(items.count == 2)
        #expect((items[0]["id"] as? NSNumber)?.int64Value == 1003)
        #expect((items[0]["score"] as? NSNumber)?.doubleValue == 0.0871)
        let probs = try #require(items[0]["probabilities"] as? [String: NSNumber])
        #expect(Set(probs.keys) == ["ctr", "atcr", "ctcvr"])
        #expect(probs["ctcvr"]?.floatValue == 0.0013)
        #expect(items[1]["score"] is NSNull)
        #expect(obj["partial"] as? Bool == true)

        let whole = RequestLogLine.encode(time: 0, requestID: nil, modelVersion: "v", arm: "", fusion: (formula: "multiplicative", alpha: 1, beta: 1, gamma: 0),
                                          user: [:], query: [:], candidates: nil, items: [], tasks: ["ctr"], partial: false)
        #expect(String(decoding: whole, as: UTF8.self) == "{\"time\":\"1970-01-01T00:00:00.000Z\",\"request_id\":null,\"model_version\":\"v\",\"arm\":\"\",\"fusion\":{\"formula\":\"multiplicative\",\"alpha\":1,\"beta\":1,\"gamma\":0},\"user\":{},\"query\":{},\"candidates\":null,\"items\":[],\"partial\":false}\n")
    }
}
