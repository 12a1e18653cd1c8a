import Foundation
import Testing
import TwinTower
@testable import Training

/// The training data path (CSV → encoded rows → batches) against the serving encoder: the
/// tower input a batch gathers must be exactly what `FeatureEncoder` makes of the same CSV row
/// with the same embedding tables, including after the tables change between steps.
@Suite struct TrainingRowsTests {
    static let spec = ModelSpec(
        version: "t", tasks: [TaskSpec(name: "ctr", label: "click"), TaskSpec(name: "ctcvr", label: "order")],
        architecture: Architecture(hidden: [4], d: 3, fr: true, lr: true, clamp: false, chain: .additive),
        features: [
            FeatureSpec(name: "uid", side: .user, kind: .categorical, buckets: 13, dim: 3),
            FeatureSpec(name: "age", side: .user, kind: .dense),
            FeatureSpec(name: "words", side: .user, kind: .multi, buckets: 7, dim: 2),
            FeatureSpec(name: "item_id", side: .item, kind: .categorical, buckets: 11, dim: 2),
            FeatureSpec(name: "price", side: .item, kind: .dense),
            FeatureSpec(name: "absent", side: .item, kind: .categorical, buckets: 5, dim: 2),
        ])

    // Columns in another order than the spec, an unknown column, quoted cells, missing values;
    // no `absent` column at all.
    static let csv = """
        click,item_id,words,extra,request_id,price,uid,order,age
        1,101,red|shoes,zz,r1,12.5,u1,1,30
        0,102,,zz,r1,,u2,0,
        1,"103",red||big|red,"a,b",r2,7,42,0,41.5
        0,104,big,zz,r3,3,,0,22

        """

    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rows-\(UUID().uuidString).csv").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func read(_ path: String, skipBadRows: Bool = false) throws -> TrainingData {
        let dir = try TemporaryDirectory(prefix: "rows-test")
        defer { dir.remove() }
        return try TrainingRowReader(path: path, spec: Self.spec, skipBadRows: skipBadRows).read(into: dir.path) { _ in false }
    }

    /// The serving encoder's view of one CSV row.
    func servingInput(_ model: Model, side: Side, header: [String], cells: [String]) throws -> [Float] {
        var row = FeatureRow()
        for field in Self.spec.fields(of: side) {
            guard let c = header.firstIndex(of: field.name) else { continue }
            row[field.name] = try CSVFeatures.value(cells[c], kind: field.kind, column: field.name, line: 0)
        }
        return try model.encoder(side).encode(row)
    }

    @Test func batchesEqualTheServingEncoderBeforeAndAfterTheTablesChange() throws {
        let path = try write(Self.csv)
        let data = try read(path)
        #expect(data.train.count == 4 && data.validation.count == 0 && data.skipped == 0)
        #expect(data.positives == [2, 1])
        // Dense statistics over present values only: age 30, 41.5, 22; price 12.5, 7, 3.
        let ages: [Double] = [30, 41.5, 22], mean = ages.reduce(0, +) / 3
        let sd = (ages.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 3).squareRoot()
        #expect(abs(Double(data.denseMean[.user]![0]) - mean) < 1e-5 && abs(Double(data.denseStd[.user]![0]) - sd) < 1e-5)

        var rng = SplitMix64(seed: 3)
        var model = ModelStore.random(spec: Self.spec, using: &rng)
        model.denseMean = data.denseMean
        model.denseStd = data.denseStd
        let assembler = BatchAssembler(spec: Self.spec, denseMean: data.denseMean, denseStd: data.denseStd)
        var reader = try CSVReader(path: path)
        var rows: [[String]] = []
        while let r = try reader.next() { rows.append(r) }

        for round in 0..<2 {
            if round == 1 {  // the optimiser moved the tables: batches must see it
                for (name, table) in model.embeddings { model.embeddings[name] = table.map { $0 * -2 + 0.25 } }
            }
            let batch = assembler.assemble([2, 0, 3, 1], from: data.train, embeddings: model.embeddings)
            for (i, r) in batch.rows.enumerated() {
                let u = try servingInput(model, side: .user, header: reader.header, cells: rows[r])
                let v = try servingInput(model, side: .item, header: reader.header, cells: rows[r])
                #expect(Array(batch.xu[(i * u.count)..<((i + 1) * u.count)]) == u, "row \(r) user, round \(round)")
                #expect(Array(batch.xi[(i * v.count)..<((i + 1) * v.count)]) == v, "row \(r) item, round \(round)")
            }
            #expect(batch.labels == [1, 0, 1, 1, 0, 0, 0, 0])
        }
    }

    @Test func scatterAddsEachRowsShareOfItsBlock() throws {
        let data = try read(try write(Self.csv))
        let assembler = BatchAssembler(spec: Self.spec, denseMean: data.denseMean, denseStd: data.denseStd)
        let batch = assembler.assemble([0, 1, 2, 3], from: data.train, embeddings: [:])
        let wu = assembler.user.width, wi = assembler.item.width
        let gxu = (0..<(4 * wu)).map { Float($0) * 0.5 + 1 }, gxi = (0..<(4 * wi)).map { Float($0) - 3 }
        var user = assembler.user.embeddings.map { SparseTableGradient(buckets: $0.buckets, dim: $0.dim) }
        var item = assembler.item.embeddings.map { SparseTableGradient(buckets: $0.buckets, dim: $0.dim) }
        assembler.scatter(batch, side: .user, from: data.train, gx: gxu, into: &user)
        assembler.scatter(batch, side: .item, from: data.train, gx: gxi, into: &item)

        // Reference: dictionary accumulation straight from the CSV values.
        func bucket(_ field: String, _ value: String, _ buckets: Int) -> Int { FeatureHasher.bucket(field: field, value: value, buckets: buckets) }
        var words: [Int: [Float]] = [:]
        let wordCells = [["red", "shoes"], [], ["red", "big", "red"], ["big"]]
        let wordsOffset = assembler.user.embeddings[1].offset
        for (i, values) in wordCells.enumerated() {
            for w in values {
                var acc = words[bucket("words", w, 7)] ?? [0, 0]
                for j in 0..<2 { acc[j] += gxu[i * wu + wordsOffset + j] / Float(values.count) }
                words[bucket("words", w, 7)] = acc
            }
        }
        let got = Dictionary(uniqueKeysWithValues: user[1].touched.enumerated().map { (Int($1), Array(user[1].grads[($0 * 2)..<($0 * 2 + 2)])) })
        #expect(got.count == words.count)
        for (b, g) in words { #expect(zip(got[b] ?? [], g).allSatisfy { abs($0 - $1) < 1e-5 }, "bucket \(b)") }
        // uid: u1, u2, 42 (row 4 has none); item ids 101…104; no `absent` column at all.
        #expect(Set(user[0].touched.map(Int.init)) == Set(["u1", "u2", "42"].map { bucket("uid", $0, 13) }))
        #expect(Set(item[0].touched.map(Int.init)) == Set(["101", "102", "103", "104"].map { bucket("item_id", $0, 11) }))
        #expect(item[1].touched.isEmpty)
        user[1].reset()
        #expect(user[1].touched.isEmpty && user[1].grads.isEmpty)
    }

    @Test func badRowsStopAtTheFirstBadLineOrAreSkipped() throws {
        let header = "request_id,uid,age,words,item_id,price,click,order"
        let good = "r,u,1,a,1,2,0,0"
        let cases: [(String, String)] = [
            ("r,u,1,a,1,2,2,0", "label click must be 0 or 1"),
            ("r,u,1,a,1,2,0,1", "order=1 without click=1"),
            ("r,u,1,a,1", "5 columns, header has 8"),
            ("r,u,x1,a,1,2,0,0", "\"x1\" is not a finite number (column age)"),
            ("r,u,1,a,1,1e999,0,0", "\"1e999\" is not a finite number (column price)"),
        ]
        for (bad, message) in cases {
            let path = try write([header, good, bad, bad, good].joined(separator: "\n"))
            #expect {
                _ = try read(path)
            } throws: { error in
                "\(error)".contains("line 3: \(message)")
            }
            let skipped = try read(path, skipBadRows: true)
            #expect(skipped.skipped == 2 && skipped.train.count == 2)
        }
        let noLabel = try write("request_id,uid,click\nr,u,1\n")
        #expect(throws: FormatError.self) { _ = try read(noLabel) }
    }
}
