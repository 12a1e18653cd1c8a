import Foundation
import Testing
import TwinTower
@testable import Catalog

/// The update log's record format: append and replay, a torn last record dropped at every byte
/// offset it can be cut at, CRC mismatches detected, corruption before the tail refused.
@Suite struct UpdateLogTests {
    static func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prerank-updatelog-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        return path
    }

    static func payload(_ i: Int) -> [UInt8] {
        ItemChangeCodec.encode(CatalogChange(upserts: [.init(id: Int64(i), row: FeatureRow(values: ["price": .number(Double(i) + 0.5), "tags": .array([.string("a\"b"), .integer(7)])]))],
                                             deletes: [Int64(1000 + i)]))
    }

    @Test func appendThenReplay() throws {
        let path = Self.temporaryPath("replay.log")
        do {
            let (w, opened) = try UpdateLogWriter.open(path: path)
            #expect(opened.records.isEmpty)
            for i in 1...5 { try w.append(sequence: UInt64(i * 2), payload: Self.payload(i)) }
        }
        let contents = try UpdateLog.read(path: path)
        #expect(contents.torn == nil)
        #expect(contents.records.map(\.sequence) == [2, 4, 6, 8, 10])
        #expect(contents.records.map(\.payload) == (1...5).map(Self.payload))
        let change = try ItemChangeCodec.decode(contents.records[2].payload)
        #expect(change.upserts.map(\.id) == [3] && change.deletes == [1003])
        #expect(change.upserts[0].row["price"] == .number(3.5))
        #expect(change.upserts[0].row["tags"] == .array([.string("a\"b"), .integer(7)]))
        // Reopening appends after what is there.
        let (w, opened) = try UpdateLogWriter.open(path: path)
        #expect(opened.lastSequence == 10)
        try w.append(sequence: 11, payload: Self.payload(6))
        #expect(try UpdateLog.read(path: path).records.count == 6)
    }

    @Test func tornLastRecordIsDroppedAtEveryOffset() throws {
        var bytes = UpdateLog.magic
        for i in 1...3 { bytes += UpdateLog.encode(sequence: UInt64(i), payload: Self.payload(i)) }
        let last = UpdateLog.encode(sequence: 4, payload: Self.payload(4))
        for cut in 0..<last.count {
            let contents = try UpdateLog.parse(bytes + last[0..<cut], path: "t")
            #expect(contents.records.map(\.sequence) == [1, 2, 3], "cut at \(cut)")
            #expect(contents.validEnd == bytes.count)
            #expect((contents.torn != nil) == (cut > 0), "cut at \(cut)")
        }
        #expect(try UpdateLog.parse(bytes + last, path: "t").records.count == 4)
        // Zeros after the last good record (a filesystem that grew the file first): a tear too.
        #expect(try UpdateLog.parse(bytes + [UInt8](repeating: 0, count: 40), path: "t").records.count == 3)
        // A file torn while it was created.
        #expect(try UpdateLog.parse(Array(UpdateLog.magic[0..<5]), path: "t").records.isEmpty)
    }

    /// A change may carry any text, so a record's payload can hold the bytes of a whole valid
    /// record. Torn inside its payload, the log is still torn, not corrupt: the bytes its valid
    /// header claims are its own. Regression (fuzz target `updates`): the reader looked for a
    /// valid header from the torn record's second byte on, found the embedded one, and refused
    /// the log, so a crash during such an append kept the server from starting.
    @Test func aRecordHiddenInATornPayloadIsNotAFollowingRecord() throws {
        var bytes = UpdateLog.magic
        bytes += UpdateLog.encode(sequence: 1, payload: Self.payload(1))
        let inner = UpdateLog.encode(sequence: 9, payload: Self.payload(9))
        let outer = UpdateLog.encode(sequence: 2, payload: Array("{\"x\":\"".utf8) + inner + Array("\"}".utf8))
        let innerStart = UpdateLog.headerBytes + 6
        for cut in (innerStart + inner.count)..<outer.count {
            let contents = try UpdateLog.parse(bytes + outer[0..<cut], path: "t")
            #expect(contents.records.map(\.sequence) == [1], "cut at \(cut)")
            #expect(contents.torn != nil && contents.validEnd == bytes.count, "cut at \(cut)")
        }
        // A damaged header still lets a record after it show corruption.
        var flipped = bytes + outer + UpdateLog.encode(sequence: 3, payload: Self.payload(3))
        flipped[bytes.count + 1] ^= 0x40
        #expect(throws: UpdateLogError.self) { try UpdateLog.parse(flipped, path: "t") }
    }

    @Test func crcMismatchIsDetected() throws {
        var bytes = UpdateLog.magic
        var offsets: [Int] = []
        for i in 1...3 {
            offsets.append(bytes.count)
            bytes += UpdateLog.encode(sequence: UInt64(i), payload: Self.payload(i))
        }
        // A flipped payload byte in the last record: a tear, dropped.
        var tail = bytes
        tail[tail.count - 3] ^= 0x40
        let contents = try UpdateLog.parse(tail, path: "t")
        #expect(contents.records.count == 2 && contents.torn?.contains("CRC") == true)
        // A flipped header byte of the last record, or garbage where it should be: a tear too.
        for position in [offsets[2] + 1, offsets[2] + 5, offsets[2] + 17] {
            var last = bytes
            last[position] ^= 0x10
            #expect(try UpdateLog.parse(last, path: "t").records.count == 2, "flip at \(position)")
        }
        // In a middle record (more records follow), at any byte: corruption, refused rather than dropped.
        for position in offsets[1]..<offsets[2] {
            var middle = bytes
            middle[position] ^= 0x01
            #expect(throws: UpdateLogError.self, "flip at \(position)") { try UpdateLog.parse(middle, path: "t") }
        }
        #expect(throws: UpdateLogError.self) { try UpdateLog.parse(Array("NOTALOG!".utf8), path: "t") }
    }

    @Test func openingCutsTheTornTailBeforeAppending() throws {
        let path = Self.temporaryPath("torn.log")
        do {
            let (w, _) = try UpdateLogWriter.open(path: path)
            try w.append(sequence: 1, payload: Self.payload(1))
        }
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let torn = good + Data(UpdateLog.encode(sequence: 2, payload: Self.payload(2)).prefix(9))
        try torn.write(to: URL(fileURLWithPath: path))
        let (w, opened) = try UpdateLogWriter.open(path: path)
        #expect(opened.torn != nil && opened.records.count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == good)
        try w.append(sequence: 2, payload: Self.payload(2))
        let contents = try UpdateLog.read(path: path)
        #expect(contents.torn == nil && contents.records.map(\.sequence) == [1, 2])
    }

    /// Issue #21: one writer per log. The lock is per open file, so a second open in this process
    /// stands for a second server; closing the first lets it in.
    @Test func aSecondWriterIsRefusedWithOneLine() throws {
        let path = Self.temporaryPath("locked.log")
        let (first, _) = try UpdateLogWriter.open(path: path)
        try first.append(sequence: 1, payload: Self.payload(1))
        do {
            _ = try UpdateLogWriter.open(path: path)
            Issue.record("a second writer opened a locked log")
        } catch {
            #expect(error.description.contains("another process is writing this update log"))
            #expect(!error.description.contains("\n"))
        }
        first.close()
        let (second, opened) = try UpdateLogWriter.open(path: path)
        #expect(opened.records.map(\.sequence) == [1])
        second.close()
    }

    /// Issue #21: the writer notices every way the file at its path stops being the log it writes.
    @Test func checkNoticesMovedTruncatedReplacedAndRewrittenFiles() throws {
        let path = Self.temporaryPath("follow.log")
        func fresh() throws -> UpdateLogWriter {
            try? FileManager.default.removeItem(atPath: path)
            let (w, _) = try UpdateLogWriter.open(path: path)
            try w.append(sequence: 1, payload: Self.payload(1))
            try w.append(sequence: 2, payload: Self.payload(2))
            #expect(w.check() == nil && w.openFileIsIntact)
            return w
        }
        // Moved away: the old file keeps everything (and can be read back to carry it over).
        var w = try fresh()
        try? FileManager.default.removeItem(atPath: path + ".1")
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        #expect(w.check()?.contains("moved") == true)
        #expect(w.openFileIsIntact && !w.isOpen(path) && w.isOpen(path + ".1"))
        #expect(try w.readBack().records.map(\.sequence) == [1, 2])
        // ... and a new file created at the path (logrotate's `create`).
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        #expect(w.check()?.contains("another file") == true)
        w.close()
        // Truncated in place (`: > updates.log`): same inode, shorter.
        w = try fresh()
        #expect(truncate(path, 0) == 0)
        #expect(w.check()?.contains("truncated") == true && !w.openFileIsIntact)
        w.close()
        // Rewritten in place with the same length (a backup copied over it).
        w = try fresh()
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count - 2] ^= 0x20
        let fd = open(path, O_WRONLY)
        #expect(pwrite(fd, bytes, bytes.count, 0) == bytes.count)
        close(fd)
        #expect(w.check()?.contains("rewritten") == true)
        w.close()
        // Grown by someone else.
        w = try fresh()
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data([1, 2, 3]))
        try h.close()
        #expect(w.check()?.contains("grew") == true)
        w.close()
    }

    @Test func aCarriedLogKeepsItsSequencesWithOneSync() throws {
        let path = Self.temporaryPath("carry.log")
        let records = (3...5).map { UpdateLog.Record(sequence: UInt64($0), payload: Self.payload($0), offset: 0) }
        let (w, _) = try UpdateLogWriter.open(path: path)
        try w.append(records: records)
        try w.append(sequence: 9, payload: Self.payload(9))
        #expect(w.check() == nil)
        let back = try UpdateLog.read(path: path)
        #expect(back.records.map(\.sequence) == [3, 4, 5, 9] && back.records[1].payload == Self.payload(4))
        w.close()
    }

    @Test func toolsRefuseAMissingLogUnlessAllowed() throws {
        let path = Self.temporaryPath("missing.log")
        #expect(throws: UpdateLogError.self) { try UpdateLog.read(path: path, allowMissing: false) }
        #expect(try UpdateLog.read(path: path, allowMissing: true).records.isEmpty)
    }

    @Test func decoderNamesTheField() throws {
        func field(_ body: String) -> String? {
            do { _ = try ItemChangeCodec.decode(Array(body.utf8)); return nil } catch { return error.field ?? error.code }
        }
        #expect(field(#"{"upsert":[{"item_id":1},{"price":2}]}"#) == "upsert[1].item_id")
        #expect(field(#"{"upsert":[{"item_id":1.5}]}"#) == "upsert[0].item_id")
        #expect(field(#"{"delete":[1,"x"]}"#) == "delete[1]")
        #expect(field(#"{"upsert":[{"item_id":1}],"delete":[1]}"#) == "delete[0]")
        #expect(field(#"{"upsert":[{"item_id":1,"tags":[[1]]}]}"#) == "upsert[0].tags[0]")
        #expect(field(#"{"nope":1}"#) == "nope")
        #expect(field(#"{"upsert":[{"item_id":1}"#) == "bad_json" || field(#"{"upsert":[{"item_id":1}"#) == "upsert")
        let ok = try ItemChangeCodec.decode(Array(#"{"upsert":null,"delete":[4,5]}"#.utf8))
        #expect(ok.upserts.isEmpty && ok.deletes == [4, 5])
    }
}
