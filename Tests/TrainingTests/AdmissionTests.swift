import Foundation
import Testing
import TwinTower
@testable import Training

/// Feature admission (issue 13): counts per bucket from the encode pass, the export rule (every
/// non-admitted bucket's row holds the shared OOV vector), and that serving, unchanged, sends a
/// rare or never-seen value to that vector.
@Suite struct AdmissionTests {
    static let tasks = [TaskSpec(name: "ctr", label: "click"), TaskSpec(name: "ctcvr", label: "order")]
    static let features = [
        FeatureSpec(name: "uid", side: .user, kind: .categorical, buckets: 101, dim: 3),
        FeatureSpec(name: "words", side: .user, kind: .multi, buckets: 53, dim: 2),
        FeatureSpec(name: "item_id", side: .item, kind: .categorical, buckets: 97, dim: 2),
        FeatureSpec(name: "price", side: .item, kind: .dense),
    ]
    static let spec = ModelSpec(version: "t", tasks: tasks,
                                architecture: Architecture(hidden: [4], d: 3, fr: true, lr: true, clamp: false, chain: .additive),
                                features: features)

    func bucket(_ field: String, _ value: String) -> Int {
        FeatureHasher.bucket(field: field, value: value, buckets: Self.features.first { $0.name == field }!.buckets!)
    }

    /// `u1` on 6 rows, `u2` on 3, `u3` on 1; words `red` 7 times (twice in one cell), `big` once.
    func csv(rows extra: Int = 0) -> String {
        var lines = ["request_id,uid,words,item_id,price,click,order"]
        let uids = ["u1", "u1", "u1", "u1", "u1", "u1", "u2", "u2", "u2", "u3"]
        let words = ["red", "red|red", "red", "red", "", "red", "big", "", "", "red"]
        for (i, (u, w)) in zip(uids, words).enumerated() {
            lines.append("r\(i),\(u),\(w),i\(i % 2),\(i),\(i % 3 == 0 ? 1 : 0),0")
        }
        for i in 0..<extra {  // more rows for the end-to-end test: u1 and u2 only
            lines.append("x\(i),\(i % 2 == 0 ? "u1" : "u2"),red,i\(i % 2),\(i % 7),\(i % 4 == 0 ? 1 : 0),\(i % 16 == 0 ? 1 : 0)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("admission-\(UUID().uuidString).csv").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func theEncodePassCountsValuesPerBucketOnTrainingRowsOnly() throws {
        let path = try write(csv())
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dir = try TemporaryDirectory(prefix: "admission-test")
        defer { dir.remove() }
        // Request r9 (the only u3 row) goes to validation: it must not count.
        let r9 = FeatureHasher.fnv1a("r9".utf8)
        let data = try TrainingRowReader(path: path, spec: Self.spec, skipBadRows: false).read(into: dir.path) { $0 == r9 }
        #expect(data.train.count == 9 && data.validation.count == 1)
        #expect(data.counts.count == 3)  // uid, words, item_id: record order
        #expect(data.counts[0][bucket("uid", "u1")] == 6 && data.counts[0][bucket("uid", "u2")] == 3)
        #expect(data.counts[0][bucket("uid", "u3")] == 0)
        #expect(data.counts[0].reduce(0, +) == 9)
        #expect(data.counts[1][bucket("words", "red")] == 6 && data.counts[1][bucket("words", "big")] == 1)
        #expect(data.counts[2].reduce(0, +) == 9)

        let admission = Admission(spec: Self.spec, counts: data.counts, minCount: 3, idFields: ["uid"])
        let uid = admission.fields[0]
        #expect(uid.isID && !admission.fields[1].isID)
        #expect(uid.isAdmitted(bucket("uid", "u1")) && uid.isAdmitted(bucket("uid", "u2")))
        #expect(!uid.isAdmitted(bucket("uid", "u3")))
        #expect(Int(uid.rowOf[bucket("uid", "u3")]) == uid.oovRow && uid.oovRow == 101)
        let vocabulary = admission.vocabulary()
        #expect(vocabulary[0].seenBuckets == 2 && vocabulary[0].admittedBuckets == 2 && vocabulary[0].oovShare == 0)
        // words: red (6) admitted, big (1) not: 1 of 7 values goes to OOV.
        #expect(vocabulary[1].seenBuckets == 2 && vocabulary[1].admittedBuckets == 1 && vocabulary[1].oovValues == 1 && vocabulary[1].values == 7)
        // Admission off: identity map, everything seen is "admitted".
        let off = Admission(spec: Self.spec, counts: data.counts, minCount: 0, idFields: [])
        #expect(off.fields.allSatisfy { $0.rowOf.isEmpty } && off.vocabulary()[1].admittedBuckets == 2)

        // Batches read non-admitted buckets from the OOV row: `big` (row 6) reads words' OOV row.
        var tables: [String: [Float]] = [:]
        for f in admission.fields { tables[f.name] = (0..<((f.buckets + 1) * f.dim)).map { Float($0) } }
        let assembler = BatchAssembler(spec: Self.spec, denseMean: data.denseMean, denseStd: data.denseStd, admission: admission)
        let batch = assembler.assemble([6], from: data.train, embeddings: tables)
        let words = assembler.user.embeddings[1]
        #expect(Array(batch.xu[words.offset..<(words.offset + 2)]) == [106, 107])  // row 53 of a dim-2 table
        // A dropped id field reads the OOV row too.
        let dropped = assembler.assemble([0], from: data.train, embeddings: tables, dropped: [1])
        #expect(Array(dropped.xu[0..<3]) == [303, 304, 305])
    }

    @Test func exportPutsTheOOVVectorInEveryNonAdmittedRowAndDropsTheExtraRow() {
        var counts = Self.features.filter { $0.kind != .dense }.map { [UInt32](repeating: 0, count: $0.buckets!) }
        counts[0][5] = 4; counts[0][7] = 1; counts[0][9] = 2  // uid: only bucket 5 reaches min-count 2… and 9
        counts[2][3] = 10
        let admission = Admission(spec: Self.spec, counts: counts, minCount: 2, idFields: ["uid", "item_id"])
        var rng = SplitMix64(seed: 9)
        var model = ModelStore.random(spec: Self.spec, using: &rng)
        for f in admission.fields { model.embeddings[f.name] = (0..<((f.buckets + 1) * f.dim)).map { _ in Float.random(in: -1...1, using: &rng) } }
        let exported = admission.export(model)
        for f in admission.fields {
            let trained = model.embeddings[f.name]!, out = exported.embeddings[f.name]!
            #expect(out.count == f.buckets * f.dim)
            let oov = Array(trained[(f.buckets * f.dim)...])
            for b in 0..<f.buckets {
                let row = Array(out[(b * f.dim)..<((b + 1) * f.dim)])
                let admitted = counts[admission.fields.firstIndex { $0.name == f.name }!][b] >= 2
                #expect(row == (admitted ? Array(trained[(b * f.dim)..<((b + 1) * f.dim)]) : oov), "\(f.name) bucket \(b)")
            }
        }
        // Warm start chosen as best epoch: id fields were never read, so all their rows are OOV.
        let idsOff = admission.export(model, idsOff: true)
        let uid = idsOff.embeddings["uid"]!, oov = Array(model.embeddings["uid"]![(101 * 3)...])
        #expect((0..<101).allSatisfy { Array(uid[($0 * 3)..<($0 * 3 + 3)]) == oov })
        #expect(idsOff.embeddings["words"]! == exported.embeddings["words"]!)
        // The exported model saves and loads with the unchanged format.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("admission-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: Never.self) {
            try ModelStore.save(exported, directory: dir)
            let loaded = try ModelStore.load(directory: dir)
            #expect(loaded.embeddings["uid"]! == exported.embeddings["uid"]!)
        }
    }

    /// Two epochs of batch 16 on every row, `uid` the one id field, admission at 5, ids from
    /// the first epoch (no warm start: admitted rows are their own).
    static func uidConfig(idDropout: Float) -> TrainingConfig {
        var config = TrainingConfig(architecture: spec.architecture)
        config.epochs = 2
        config.batch = 16
        config.validationFraction = 0
        config.minCount = 5
        config.idFields = ["uid"]
        config.idDropout = idDropout
        config.idWarmupEpochs = 0
        return config
    }

    static func train(_ path: String, _ config: TrainingConfig) throws -> (Model, TrainingReport) {
        try Trainer.train(features: FeaturesFile(tasks: tasks, features: features), data: path, config: config)
    }

    /// `--id-dropout 1` (every id read from the OOV row) trained into a trap converting 2^64 to
    /// UInt64 before; it must train, and no admitted id row may then move (no row reads them).
    @Test func idDropoutOfOneTrainsEveryRowOnTheOOVRow() throws {
        let path = try write(csv(rows: 200))
        defer { try? FileManager.default.removeItem(atPath: path) }
        var config = Self.uidConfig(idDropout: 1)
        config.embeddingL2 = 0
        config.epochs = 1
        let (one, _) = try Self.train(path, config)
        config.epochs = 2
        let (two, _) = try Self.train(path, config)
        // The towers kept learning; the admitted id rows, never read, are still their initial values.
        #expect(one.embeddings["words"] != two.embeddings["words"])
        for uid in ["u1", "u2"] {
            let b = bucket("uid", uid)
            #expect(Array(one.embeddings["uid"]![(b * 3)..<(b * 3 + 3)]) == Array(two.embeddings["uid"]![(b * 3)..<(b * 3 + 3)]))
        }
    }

    @Test func aRareOrUnseenValueServedLaterLandsOnTheOOVVector() throws {
        let path = try write(csv(rows: 200))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (model, report) = try Self.train(path, Self.uidConfig(idDropout: 0.5))
        #expect(report.vocabulary.first { $0.name == "uid" }.map { ($0.seenBuckets, $0.admittedBuckets, $0.oovValues) }! == (3, 2, 1))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("admission-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelStore.save(model, directory: dir)
        let served = try ModelStore.load(directory: dir)  // the serving path's loader
        #expect(served.embeddings["uid"]!.count == 101 * 3)

        func userBlock(_ uid: String) throws -> [Float] {
            var row = FeatureRow()
            row["uid"] = .string(uid)
            return Array(try served.encoder(.user).encode(row)[0..<3])
        }
        // An unseen value whose bucket no training value hit.
        let seen = Set(["u1", "u2", "u3"].map { bucket("uid", $0) })
        let unseen = (0..<1000).map { "new\($0)" }.first { !seen.contains(bucket("uid", $0)) }!
        let rare = try userBlock("u3"), never = try userBlock(unseen)
        let u1 = try userBlock("u1"), u2 = try userBlock("u2")
        #expect(rare == never)
        #expect(rare != u1 && u1 != u2)
        // Every bucket no admitted value hashes into holds that same vector.
        let table = served.embeddings["uid"]!
        let admitted = Set(["u1", "u2"].map { bucket("uid", $0) })
        #expect((0..<101).filter { !admitted.contains($0) }.allSatisfy { Array(table[($0 * 3)..<($0 * 3 + 3)]) == rare })
    }
}
