import Catalog
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Fusion
import Testing
import TwinTower
@testable import Training

/// A tiny world: random model (TwinTower), catalog → IndexBuilder, test.csv with progressive
/// labels, relevance, unknown items and interleaved requests; then eval and tune-fusion.
final class EvalWorld: @unchecked Sendable {
    let dir: String
    let model: Model
    let index: ItemIndex
    let testCSV: String
    /// Per known row (input order): user features, item features, labels.
    let known: [(request: String, user: FeatureRow, item: FeatureRow, id: Int64)]
    let unknownRows: Int
    let distinctUsers: Set<String>

    init(seed: UInt64 = 7, relevance: Bool = true) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("evalx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let spec = ModelSpec(
            version: "evalx-test",
            tasks: [.init(name: "ctr", label: "click"), .init(name: "atcr", label: "cart"), .init(name: "ctcvr", label: "order")],
            architecture: Architecture(hidden: [8], d: 8, fr: true, lr: true, clamp: false, chain: .additive),
            features: [
                .init(name: "user_id", side: .user, kind: .categorical, buckets: 53, dim: 4),
                .init(name: "query_terms", side: .user, kind: .multi, buckets: 31, dim: 4),
                .init(name: "segment", side: .user, kind: .categorical, buckets: 5, dim: 2),
                .init(name: "age", side: .user, kind: .dense),
                .init(name: "item_id", side: .item, kind: .categorical, buckets: 97, dim: 4),
                .init(name: "brand", side: .item, kind: .categorical, buckets: 11, dim: 2),
                .init(name: "price", side: .item, kind: .dense),
            ])
        var rng = SplitMix64(seed: seed)
        let model = try ModelStore.save(ModelStore.random(spec: spec, using: &rng), directory: dir + "/model")
        self.model = model
        var items = "item_id,brand,price\n"
        var itemRows: [Int64: FeatureRow] = [:]
        for i in 0..<150 {
            let id = Int64(1000 + 3 * i)
            let brand = "b\(i % 9)", price = Double(i % 40) + 0.5
            items += "\(id),\(brand),\(price)\n"
            itemRows[id] = FeatureRow(values: ["brand": .string(brand), "price": .number(price), "item_id": .string(String(id))])
        }
        try items.write(toFile: dir + "/items.csv", atomically: true, encoding: .utf8)
        _ = try IndexBuilder.build(model: model, catalog: dir + "/items.csv", dtype: .f32, output: dir + "/index.st")
        index = try ItemIndex(path: dir + "/index.st", model: model)
        var known: [(request: String, user: FeatureRow, item: FeatureRow, id: Int64)] = []
        var unknownRows = 0
        var distinctUsers = Set<String>()

        var lines: [String] = []
        var entries: [(line: String, known: (String, FeatureRow, FeatureRow, Int64)?)] = []
        let ids = Array(itemRows.keys).sorted()
        for r in 0..<24 {
            let request = r == 3 ? "r,3" : "r\(r)"
            let user = "u\(Int.random(in: 0..<10, using: &rng))", segment = ["gold", "silver", ""][r % 3]
            let terms = (0..<Int.random(in: 0...3, using: &rng)).map { _ in "q\(Int.random(in: 0..<12, using: &rng))" }
            let age = Double(Int.random(in: 18...70, using: &rng))
            let userRow = FeatureRow(values: ["user_id": .string(user), "query_terms": .array(terms.map { .string($0) }),
                                              "segment": segment.isEmpty ? .null : .string(segment), "age": .number(age)])
            distinctUsers.insert([user, terms.joined(separator: "|"), segment, String(age)].joined(separator: ","))
            let n = Int.random(in: 3...60, using: &rng)
            var cands = Array(ids.shuffled(using: &rng).prefix(n))
            if r % 4 == 0 { cands.append(7) }  // not in the catalog
            for c in cands {
                let p = itemRows[c].map { try? model.probabilities(user: userRow, item: $0) } ?? nil
                let click = Double.random(in: 0..<1, using: &rng) < 0.1 + 0.5 * Double(p?[0] ?? 0) ? 1 : 0
                let cart = click * (Double.random(in: 0..<1, using: &rng) < 0.6 ? 1 : 0)
                let order = cart * (Double.random(in: 0..<1, using: &rng) < 0.3 + 0.5 * Double(p?[2] ?? 0) ? 1 : 0)
                var cells = ["\"\(request)\"", user, terms.joined(separator: "|"), segment, String(age), String(c), "x", "1.5",
                             String(click), String(cart), String(order)]
                if relevance { cells.append(Int.random(in: 0..<10, using: &rng) == 0 ? "" : String(Int.random(in: 0...3, using: &rng))) }
                entries.append((cells.joined(separator: ","), itemRows[c].map { (request, userRow, $0, c) }))
            }
        }
        // Interleave: every 7th row goes to the end (requests are not contiguous).
        let reordered = entries.enumerated().filter { $0.offset % 7 != 0 }.map(\.element)
            + entries.enumerated().filter { $0.offset % 7 == 0 }.map(\.element)
        for e in reordered {
            lines.append(e.line)
            if let k = e.known { known.append((k.0, k.1, k.2, k.3)) } else { unknownRows += 1 }
        }
        self.known = known
        self.unknownRows = unknownRows
        self.distinctUsers = distinctUsers
        testCSV = dir + "/test.csv"
        let header = "request_id,user_id,query_terms,segment,age,item_id,brand,price,click,cart,order" + (relevance ? ",relevance" : "")
        try ([header] + lines).joined(separator: "\n").appending("\n").write(toFile: dir + "/test.csv", atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

/// Minimal CSV parsing for the predictions file (quoted request ids).
func parseCSVLine(_ line: String) -> [String] {
    var fields: [String] = [], field = "", quoted = false
    var chars = Array(line)[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false }
            } else { field.append(c) }
        } else if c == "\"" { quoted = true }
        else if c == "," { fields.append(field); field = "" }
        else { field.append(c) }
    }
    fields.append(field)
    return fields
}

@Suite struct EvalEndToEndTests {
    @Test func evalAUCEqualsAUCOfItsOwnPredictions() throws {
        let world = try EvalWorld()
        let evaluator = Evaluator(model: world.model, index: world.index)
        let data = try evaluator.score(data: world.testCSV)
        #expect(data.rows == world.known.count)
        #expect(data.unknownItems == world.unknownRows && data.unknownItems > 0)
        #expect(data.requests == 24)
        #expect(data.userTowerRuns == world.distinctUsers.count)
        #expect(data.hasRelevance)

        // Probabilities are the model's: equal to the straight two-tower forward pass.
        for (i, row) in world.known.enumerated() {
            let expected = try world.model.probabilities(user: row.user, item: row.item)
            for k in 0..<3 { #expect(abs(data.probabilities[i * 3 + k] - expected[k]) < 1e-5) }
            #expect(data.itemIDs[i] == row.id && data.requestIDs[Int(data.requestOfRow[i])] == row.request)
        }

        let fusion = FusionPolicy(formula: .additive, alpha: 1, beta: 20, gamma: 0.01)
        let report = Evaluator.evaluate(data, fusion: fusion, k: 10)
        let predictions = world.dir + "/pred.csv"
        try data.writePredictions(to: predictions, fusion: fusion)
        let text = try String(contentsOfFile: predictions, encoding: .utf8)
        let rows = text.split(separator: "\n").map { parseCSVLine(String($0)) }
        #expect(rows[0] == ["request_id", "item_id", "ctr", "atcr", "ctcvr", "score"])
        let body = Array(rows.dropFirst())
        #expect(body.count == report.rows)
        // Labels from the test file, in the same (input) order.
        let labelRows = try String(contentsOfFile: world.testCSV, encoding: .utf8).split(separator: "\n").dropFirst()
            .map { parseCSVLine(String($0)) }.filter { $0[5] != "7" }
        #expect(labelRows.count == body.count)
        for (k, task) in ["ctr", "atcr", "ctcvr"].enumerated() {
            let p = body.map { Double(Float($0[2 + k])!) }
            let y = labelRows.map { Double($0[8 + k])! }
            #expect(Metrics.auc(scores: p, labels: y) == report.tasks[k].auc, "\(task)")
            #expect(Metrics.logLoss(probabilities: p, labels: y) == report.tasks[k].logLoss, "\(task)")
        }
        // WR@K from the predictions by a plain sort per request.
        var byRequest: [String: [(score: Double, id: Int64, order: Double)]] = [:]
        for (row, labels) in zip(body, labelRows) {
            #expect(row[0] == labels[0] && row[1] == labels[5])
            byRequest[row[0], default: []].append((Double(row[5])!, Int64(row[1])!, Double(labels[10])!))
        }
        var captured = 0.0, total = 0.0
        for list in byRequest.values {
            let ranked = list.sorted { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
            captured += ranked.prefix(10).reduce(0) { $0 + $1.order }
            total += list.reduce(0) { $0 + $1.order }
        }
        #expect(total > 0 && captured < total)
        #expect(abs(report.weightedRecall! - captured / total) < 1e-12)
    }

    @Test func tunedBestEqualsEvalAtThoseWeightsAndSVGIsWellFormed() throws {
        let world = try EvalWorld(seed: 11)
        let data = try Evaluator(model: world.model, index: world.index).score(data: world.testCSV)
        let lists = TuneFusion.Lists(data)
        #expect(lists.count > 0)
        var results: [FusionGridResult] = []
        for grid in [FusionGrid.defaultAdditive(relevance: true), .defaultMultiplicative()] {
            let result = TuneFusion.search(lists, grid: grid, k: 5)
            #expect(result.bestWR == result.wr.compactMap { $0 }.max())
            #expect(Evaluator.evaluate(data, fusion: result.best, k: 5).weightedRecall == result.bestWR)
            // every point, not only the best, is what eval reports
            for (g, a, b) in [(0, 0, 0), (1, 2, 3), (grid.gammas.count - 1, grid.alphas.count - 1, grid.betas.count - 1)] {
                let policy = grid.policy(alpha: a, beta: b, gamma: min(g, grid.gammas.count - 1))
                #expect(Evaluator.evaluate(data, fusion: policy, k: 5).weightedRecall
                    == result.wr(alpha: a, beta: b, gamma: min(g, grid.gammas.count - 1)))
            }
            results.append(result)
        }
        #expect(results[0].grid.gammas.count == 6 && results[1].best.gamma == 0)
        let svg = FusionHeatMap.svg(results, subtitle: "test <&> subtitle")
        let parser = XMLParser(data: Data(svg.utf8))
        final class Counter: NSObject, XMLParserDelegate {
            var rects = 0, texts = 0, best = 0, root = ""
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) {
                if root.isEmpty { root = name }
                if name == "rect" { rects += 1; if attributes["class"] == "best" { best += 1 } }
                if name == "text" { texts += 1 }
            }
        }
        let counter = Counter()
        parser.delegate = counter
        #expect(parser.parse(), "SVG is not well-formed XML: \(String(describing: parser.parserError))")
        #expect(counter.root == "svg" && counter.best == 2)
        #expect(counter.rects >= 5 * 9 + 11 * 11)
        let yaml = FusionText.configYAML(results[0].best)
        #expect(yaml.hasPrefix("fusion:\n  formula: additive\n  alpha: "))
    }

    @Test func withoutRelevanceGammaIsNotSearched() throws {
        let world = try EvalWorld(seed: 3, relevance: false)
        let data = try Evaluator(model: world.model, index: world.index).score(data: world.testCSV)
        #expect(!data.hasRelevance)
        #expect(FusionGrid.defaultAdditive(relevance: data.hasRelevance).gammas == [0])
    }

    @Test func badInputNamesTheProblem() throws {
        let world = try EvalWorld(seed: 5)
        let evaluator = Evaluator(model: world.model, index: world.index)
        func failure(_ csv: String) -> String {
            let path = world.dir + "/bad-\(UUID().uuidString).csv"
            try? csv.write(toFile: path, atomically: true, encoding: .utf8)
            do { _ = try evaluator.score(data: path); return "" } catch { return error.description }
        }
        #expect(failure("request_id,item_id,click,cart\nr,1000,1,0\n").contains("order"))
        #expect(failure("item_id,click,cart,order\n1000,1,0,0\n").contains("request_id"))
        #expect(failure("request_id,item_id,click,cart,order\nr,1000,1,0,x\n").contains("line 2"))
        #expect(failure("request_id,item_id,click,cart,order\nr,abc,1,0,0\n").contains("item_id"))
        #expect(failure("request_id,item_id,click,cart,order,age\nr,1000,1,0,0,old\n").contains("age"))
        #expect(failure("request_id,item_id,click,cart,order\nr,1000,1,0\n").contains("columns"))
    }
}
