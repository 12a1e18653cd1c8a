import Foundation
import Testing
import TwinTower
@testable import Training

@Suite("Synth dataset files")
struct SynthDatasetTests {
    @Test func sameSeedGivesByteIdenticalFilesAndAnotherSeedDoesNot() throws {
        let a = SynthSupport.tempDirectory("det-a"), b = SynthSupport.tempDirectory("det-b"), c = SynthSupport.tempDirectory("det-c")
        defer { [a, b, c].forEach(SynthSupport.remove) }
        try SyntheticDataset.generate(config: SynthSupport.smallConfig(seed: 7), to: a)
        try SyntheticDataset.generate(config: SynthSupport.smallConfig(seed: 7), to: b)
        try SyntheticDataset.generate(config: SynthSupport.smallConfig(seed: 8), to: c)
        for file in SyntheticDataset.fileNames {
            #expect(try SynthSupport.bytes(a, file) == SynthSupport.bytes(b, file), "\(file) differs for the same seed")
        }
        for file in ["items.csv", "train.csv", "test.csv"] {
            #expect(try SynthSupport.bytes(a, file) != SynthSupport.bytes(c, file), "\(file) same for another seed")
        }
    }

    @Test func moreRequestsExtendTheSameFiles() throws {
        // Request r draws only from its own stream: a longer run starts with the shorter one.
        let short = SynthSupport.tempDirectory("short"), long = SynthSupport.tempDirectory("long")
        defer { [short, long].forEach(SynthSupport.remove) }
        try SyntheticDataset.generate(config: SynthSupport.smallConfig(requests: 60), to: short)
        try SyntheticDataset.generate(config: SynthSupport.smallConfig(requests: 120), to: long)
        for file in ["train.csv", "test.csv"] {
            let s = try SynthSupport.bytes(short, file), l = try SynthSupport.bytes(long, file)
            #expect(l.count > s.count && l.prefix(s.count) == s, "\(file)")
        }
        #expect(try SynthSupport.bytes(short, "items.csv") == SynthSupport.bytes(long, "items.csv"))
    }

    @Test func rowsHaveTheColumnsLabelsAndTruthsOfTheContract() throws {
        let dir = SynthSupport.tempDirectory("rows")
        defer { SynthSupport.remove(dir) }
        let config = SynthSupport.smallConfig(requests: 200)
        let report = try SyntheticDataset.generate(config: config, to: dir)
        let items = try SynthSupport.table(dir, "items.csv")
        #expect(items.header == ["item_id", "item_category", "brand", "price", "rating"])
        #expect(items.rows.count == config.items)
        let ids = items.ints("item_id")
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }, "item ids ascending and unique")
        var catalog: [String: [String]] = [:]
        for row in items.rows { catalog[row[0]] = row }

        var requestIDs: [Set<Int>] = []
        for (file, stats) in [("train.csv", report.train), ("test.csv", report.test)] {
            let t = try SynthSupport.table(dir, file)
            #expect(t.header == SyntheticSchema.impressionColumns)
            #expect(t.header.count == 20)
            #expect(t.rows.count == stats.rows)
            var byRequest: [Int: [String]] = [:]
            let itemCols = SyntheticSchema.itemColumns.map(t.index)
            for row in t.rows {
                #expect(row.count == t.header.count)
                let click = Int(row[t.index("click")])!, cart = Int(row[t.index("cart")])!, order = Int(row[t.index("order")])!
                #expect([0, 1].contains(click) && [0, 1].contains(cart) && [0, 1].contains(order))
                #expect(order <= cart && cart <= click, "order ⇒ cart ⇒ click")
                let tc = Double(row[t.index("truth_click")])!, ta = Double(row[t.index("truth_cart")])!, to = Double(row[t.index("truth_order")])!
                #expect(0 <= to && to <= ta && ta <= tc && tc <= 1)
                #expect((0...3).contains(Int(row[t.index("relevance")])!))
                #expect(Double(row[t.index("age")]) != nil && Double(row[t.index("price")]) != nil && Double(row[t.index("rating")]) != nil)
                let terms = row[t.index("query_terms")].split(separator: "|")
                #expect(terms.count >= 2 && terms.allSatisfy { !$0.isEmpty })
                #expect(itemCols.map { row[$0] } == catalog[row[t.index("item_id")]], "item cells match items.csv")
                byRequest[Int(row[0])!, default: []].append(row[t.index("item_id")])
            }
            #expect(byRequest.count == stats.requests)
            for (_, shown) in byRequest {
                #expect(shown.count == config.candidates && Set(shown).count == config.candidates)
            }
            #expect(t.ints("click").reduce(0, +) == stats.clicks)
            #expect(t.ints("order").reduce(0, +) == stats.orders)
            requestIDs.append(Set(byRequest.keys))
        }
        #expect(requestIDs[0].isDisjoint(with: requestIDs[1]), "split by request_id")
        #expect(requestIDs[0].union(requestIDs[1]) == Set(1...config.requests))
        #expect(report.test.requests > 15 && report.test.requests < 70, "≈20 % of 200 requests in test")
    }

    @Test func featuresYAMLListsExactlyTheFeatureColumns() throws {
        let dir = SynthSupport.tempDirectory("yaml")
        defer { SynthSupport.remove(dir) }
        try SyntheticDataset.generate(config: SynthSupport.smallConfig(), to: dir)
        let yaml = try SynthSupport.text(dir, "features.yaml")
        let (tasks, features) = parseFeaturesYAML(yaml)
        #expect(tasks == SyntheticSchema.tasks)

        let train = try SynthSupport.table(dir, "train.csv")
        let items = try SynthSupport.table(dir, "items.csv")
        let featureColumns = train.header.filter { !SyntheticSchema.nonFeatureColumns.contains($0) }
        #expect(features.map(\.name) == featureColumns, "features in CSV column order")
        #expect(features.filter { $0.side == .item }.map(\.name) == items.header)
        #expect(features.first { $0.name == "query_terms" }?.kind == .multi)
        for f in features {
            switch f.kind {
            case .dense:
                #expect(f.buckets == nil && f.dim == nil)
                #expect(train.column(f.name).allSatisfy { Double($0) != nil })
            case .categorical, .multi:
                let buckets = try #require(f.buckets), dim = try #require(f.dim)
                #expect(SyntheticSchema.isPrime(buckets) && (8...16).contains(dim), "\(f.name)")
                var values = Set(train.column(f.name))
                if f.kind == .multi { values = Set(values.flatMap { $0.split(separator: "|").map(String.init) }) }
                #expect(buckets >= 2 * values.count, "\(f.name): \(buckets) buckets for \(values.count) values")
            }
        }
    }

    /// Reads the flow-mapping lines FeaturesYAML writes (`  - {k: v, …}` under `tasks:`/`features:`).
    private func parseFeaturesYAML(_ text: String) -> ([TaskSpec], [FeatureSpec]) {
        var section = ""
        var tasks: [TaskSpec] = []
        var features: [FeatureSpec] = []
        for line in text.split(separator: "\n").map(String.init) where !line.hasPrefix("#") {
            if !line.hasPrefix(" ") { section = line; continue }
            let body = line.trimmingCharacters(in: .whitespaces).dropFirst(2).dropFirst().dropLast()
            var map: [String: String] = [:]
            for pair in body.split(separator: ",") {
                let kv = pair.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                map[kv[0]] = kv[1]
            }
            if section == "tasks:" { tasks.append(TaskSpec(name: map["name"]!, label: map["label"]!)) }
            if section == "features:" {
                features.append(FeatureSpec(name: map["name"]!, side: Side(rawValue: map["side"]!)!,
                                            kind: FeatureKind(rawValue: map["kind"]!)!,
                                            buckets: map["buckets"].flatMap { Int($0) }, dim: map["dim"].flatMap { Int($0) }))
            }
        }
        return (tasks, features)
    }

    @Test func testFractionZeroWritesAnEmptyTestFile() throws {
        let dir = SynthSupport.tempDirectory("nosplit")
        defer { SynthSupport.remove(dir) }
        var config = SynthSupport.smallConfig(requests: 30)
        config.testFraction = 0
        let report = try SyntheticDataset.generate(config: config, to: dir)
        #expect(report.test.rows == 0 && report.train.rows == 30 * config.candidates)
        #expect(try SynthSupport.text(dir, "test.csv") == SyntheticSchema.impressionColumns.joined(separator: ",") + "\n")
    }
}

@Suite("Synth rates and calibration")
struct SynthRateTests {
    /// Mid-size world: 2,000 requests × 40 candidates = 80k impressions.
    static func midConfig() -> WorldConfig {
        var c = WorldConfig(users: 600, items: 2_000, queries: 400, requests: 2_000, candidates: 40, seed: 2024)
        c.calibrationRequests = 400
        return c
    }

    @Test func ratesAreNearTheShopeeFigures() throws {
        let dir = SynthSupport.tempDirectory("rates")
        defer { SynthSupport.remove(dir) }
        let report = try SyntheticDataset.generate(config: Self.midConfig(), to: dir)
        let t = report.total
        #expect(t.rows == 80_000)
        #expect((0.06...0.10).contains(t.ctr), "CTR \(t.ctr)")
        #expect((0.004...0.012).contains(t.cartRate), "cart \(t.cartRate)")
        #expect((0.001...0.004).contains(t.ctcvr), "CTCVR \(t.ctcvr)")
        let n = Double(t.rows)
        #expect(abs(t.sumTruthClick / n - 0.08) < 0.012, "mean P(click)")
        #expect(abs(t.sumTruthCart / n - 0.008) < 0.0016, "mean P(cart)")
        #expect(abs(t.sumTruthOrder / n - 0.002) < 0.0005, "mean P(order)")

        // Calibration: in bins of truth_click, the empirical click rate matches the mean truth.
        let train = try SynthSupport.table(dir, "train.csv")
        let truth = train.doubles("truth_click"), click = train.ints("click")
        let edges = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0001]
        var checked = 0
        for (lo, hi) in zip(edges, edges.dropFirst()) {
            let idx = truth.indices.filter { truth[$0] >= lo && truth[$0] < hi }
            guard idx.count >= 500 else { continue }
            let meanTruth = idx.reduce(0.0) { $0 + truth[$1] } / Double(idx.count)
            let rate = Double(idx.reduce(0) { $0 + click[$1] }) / Double(idx.count)
            let sd = (meanTruth * (1 - meanTruth) / Double(idx.count)).squareRoot()
            #expect(abs(rate - meanTruth) <= 4 * sd + 0.002, "bin [\(lo), \(hi)): rate \(rate) vs truth \(meanTruth)")
            checked += 1
        }
        #expect(checked >= 5)

        // Learnable structure: the true probabilities rank labels well (oracle AUC).
        #expect(auc(truth, click) > 0.75)
        #expect(auc(train.doubles("truth_order"), train.ints("order")) > 0.8)
    }

    private func auc(_ score: [Double], _ label: [Int]) -> Double {
        let order = score.indices.sorted { score[$0] < score[$1] }
        var rankSumPos = 0.0, pos = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && score[order[j + 1]] == score[order[i]] { j += 1 }
            let avgRank = Double(i + j + 2) / 2
            for k in i...j where label[order[k]] == 1 { rankSumPos += avgRank; pos += 1 }
            i = j + 1
        }
        let neg = Double(order.count) - pos
        return (rankSumPos - pos * (pos + 1) / 2) / (pos * neg)
    }

    @Test func samplerTruthsFollowTheLogits() throws {
        // The sampler's truths are exactly σ(b + z) chained, for every impression.
        let world = try World(config: SynthSupport.smallConfig())
        var sampler = ImpressionSampler(world: world)
        var request = sampler.makeRequest()
        for r in 0..<20 {
            sampler.sample(requestIndex: r, into: &request)
            for imp in request.impressions {
                let z = sampler.logits(user: request.user, query: request.query, item: imp.item)
                let b = world.intercepts
                let pc = 1 / (1 + exp(-(b.click + z.click)))
                let pa = pc / (1 + exp(-(b.cart + z.cart)))
                let po = pa / (1 + exp(-(b.order + z.order)))
                #expect(abs(imp.truthClick - pc) < 1e-12 && abs(imp.truthCart - pa) < 1e-12 && abs(imp.truthOrder - po) < 1e-12)
                #expect(imp.relevance == sampler.relevance(query: request.query, item: imp.item))
            }
        }
    }
}
