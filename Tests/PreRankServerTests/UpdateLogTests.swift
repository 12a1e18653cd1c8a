import Foundation
import Testing
import TwinTower
@testable import PreRankServer

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
            let w = try UpdateLogWriter(path: path)
            #expect(w.opened.records.isEmpty)
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
        let w = try UpdateLogWriter(path: path)
        #expect(w.opened.lastSequence == 10)
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
            let w = try UpdateLogWriter(path: path)
            try w.append(sequence: 1, payload: Self.payload(1))
        }
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let torn = good + Data(UpdateLog.encode(sequence: 2, payload: Self.payload(2)).prefix(9))
        try torn.write(to: URL(fileURLWithPath: path))
        let w = try UpdateLogWriter(path: path)
        #expect(w.opened.torn != nil && w.opened.records.count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == good)
        try w.append(sequence: 2, payload: Self.payload(2))
        let contents = try UpdateLog.read(path: path)
        #expect(contents.torn == nil && contents.records.map(\.sequence) == [1, 2])
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
