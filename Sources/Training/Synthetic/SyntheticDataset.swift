import Foundation
import TwinTower

/// Label and truth totals over the rows of one file (train or test).
public struct SplitStats: Sendable, Equatable, Codable {
    public var requests = 0
    public var rows = 0
    public var clicks = 0
    public var carts = 0
    public var orders = 0
    public var sumTruthClick = 0.0
    public var sumTruthCart = 0.0
    public var sumTruthOrder = 0.0

    public init() {}

    /// clicks / rows.
    public var ctr: Double { rows > 0 ? Double(clicks) / Double(rows) : 0 }
    /// carts / rows.
    public var cartRate: Double { rows > 0 ? Double(carts) / Double(rows) : 0 }
    /// orders / rows.
    public var ctcvr: Double { rows > 0 ? Double(orders) / Double(rows) : 0 }
    /// orders / clicks (the paper's CVR).
    public var cvr: Double { clicks > 0 ? Double(orders) / Double(clicks) : 0 }

    public static func + (a: SplitStats, b: SplitStats) -> SplitStats {
        var s = a
        s.requests += b.requests; s.rows += b.rows
        s.clicks += b.clicks; s.carts += b.carts; s.orders += b.orders
        s.sumTruthClick += b.sumTruthClick; s.sumTruthCart += b.sumTruthCart; s.sumTruthOrder += b.sumTruthOrder
        return s
    }
}

/// What a `SyntheticDataset.generate` run wrote.
public struct GenerationReport: Sendable {
    public var config: WorldConfig
    public var intercepts: Intercepts
    public var features: [FeatureSpec]
    public var train: SplitStats
    public var test: SplitStats
    /// Seconds spent building and calibrating the world.
    public var worldSeconds: Double
    /// Seconds spent sampling and writing impressions.
    public var streamSeconds: Double
    public var bytesWritten: Int

    public var total: SplitStats { train + test }
    /// Impression rows written per second of streaming.
    public var rowsPerSecond: Double { streamSeconds > 0 ? Double(total.rows) / streamSeconds : 0 }

    /// Human-readable summary for stderr.
    public var summaryLines: [String] {
        let t = total
        func pct(_ x: Double) -> String { String(format: "%.3f%%", 100 * x) }
        return [
            "rows: \(t.rows) (train \(train.rows) in \(train.requests) requests, test \(test.rows) in \(test.requests) requests), \(bytesWritten / 1_000_000) MB",
            "labels: CTR \(pct(t.ctr)), cart \(pct(t.cartRate)), CTCVR \(pct(t.ctcvr)), CVR (order/click) \(pct(t.cvr))",
            "truth means: P(click) \(pct(t.sumTruthClick / Double(max(1, t.rows)))), P(cart) \(pct(t.sumTruthCart / Double(max(1, t.rows)))), P(order) \(pct(t.sumTruthOrder / Double(max(1, t.rows))))",
            String(format: "intercepts: click %.4f, cart %.4f, order %.4f", intercepts.click, intercepts.cart, intercepts.order),
            String(format: "time: world %.2f s, impressions %.2f s (%.0f rows/s)", worldSeconds, streamSeconds, rowsPerSecond),
        ]
    }
}

/// Progress of a run, reported about once a second.
public struct GenerationProgress: Sendable {
    public var requestsDone: Int
    public var requestsTotal: Int
    public var rows: Int
    public var seconds: Double
}

/// `prerank generate`: builds a `World` and writes features.yaml, items.csv, train.csv and
/// test.csv into a directory, streaming impressions (memory holds only the world's tables).
public enum SyntheticDataset {
    public static let fileNames = ["features.yaml", "items.csv", "train.csv", "test.csv"]

    /// Writes the four files into `directory` (created if missing).
    /// - parameters:
    ///   - config: world size, seed, split; validated first.
    ///   - directory: output directory.
    ///   - progress: called about once a second while impressions are written.
    @discardableResult
    public static func generate(config: WorldConfig, to directory: String,
                                progress: ((GenerationProgress) -> Void)? = nil) throws -> GenerationReport {
        try config.validate()
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SyntheticError("cannot create directory \(directory): \(error.localizedDescription)")
        }
        let clock = ContinuousClock()
        let worldStart = clock.now
        let world = try World(config: config)
        let worldSeconds = seconds(clock.now - worldStart)
        let features = SyntheticSchema.features(for: world)
        let dir = URL(fileURLWithPath: directory)

        // features.yaml
        let yaml = FeaturesYAML.render(
            tasks: SyntheticSchema.tasks, features: features,
            comment: ["prerank generate: synthetic progressive world (docs/GENERATOR.md)",
                      "seed \(config.seed), users \(config.users), items \(config.items), queries \(config.queries), requests \(config.requests), candidates \(config.candidates)"])
        do {
            try Data(yaml.utf8).write(to: dir.appendingPathComponent("features.yaml"))
        } catch {
            throw SyntheticError("cannot write features.yaml: \(error.localizedDescription)")
        }

        // Item-side cells, rendered once: "item_id,item_category,brand,price,rating".
        var itemBytes: [UInt8] = []
        var itemOffsets: [Int] = [0]
        itemOffsets.reserveCapacity(world.items.count + 1)
        for item in world.items {
            let cells = [String(item.id), world.categoryNames[item.category], world.brandNames[item.brand],
                         fixed(item.price, 2), fixed(item.rating, 1)].map(CSVWriter.escape)
            itemBytes.append(contentsOf: cells.joined(separator: ",").utf8)
            itemOffsets.append(itemBytes.count)
        }

        // items.csv
        let itemsCSV = try CSVWriter(path: dir.appendingPathComponent("items.csv").path)
        itemsCSV.writeRow(SyntheticSchema.itemCatalogColumns)
        itemBytes.withUnsafeBytes { all in
            for i in 0..<world.items.count {
                itemsCSV.appendRaw(UnsafeRawBufferPointer(rebasing: all[itemOffsets[i]..<itemOffsets[i + 1]]))
                itemsCSV.endRow()
            }
        }
        try itemsCSV.close()

        // Query cells: "query_terms,query_category".
        let queryCells = (0..<world.queries.count).map { q in
            CSVWriter.joinMulti(world.queryTerms[q]) + "," + CSVWriter.escape(world.categoryNames[world.queries[q].category])
        }
        // User cells: "user_id,segment,gender,region,age".
        func userCells(_ u: Int) -> String {
            let user = world.users[u]
            return [world.userID(u), World.segmentNames[user.segment], World.genderNames[user.gender],
                    world.regionNames[user.region], String(user.age)].map(CSVWriter.escape).joined(separator: ",")
        }

        let train = try CSVWriter(path: dir.appendingPathComponent("train.csv").path)
        let test = try CSVWriter(path: dir.appendingPathComponent("test.csv").path)
        train.writeRow(SyntheticSchema.impressionColumns)
        test.writeRow(SyntheticSchema.impressionColumns)

        var trainStats = SplitStats()
        var testStats = SplitStats()
        var sampler = ImpressionSampler(world: world)
        var request = sampler.makeRequest()
        let streamStart = clock.now
        var lastReport = streamStart
        let zero = UInt8(ascii: "0"), one = UInt8(ascii: "1")

        itemBytes.withUnsafeBytes { all in
            for r in 0..<config.requests {
                sampler.sample(requestIndex: r, into: &request)
                let out = request.isTest ? test : train
                let prefix = "\(request.requestID)," + userCells(request.user) + "," + queryCells[request.query] + ","
                var stats = request.isTest ? testStats : trainStats
                stats.requests += 1
                var prefixCopy = prefix
                prefixCopy.withUTF8 { pre in
                    let preBytes = UnsafeRawBufferPointer(pre)
                    for imp in request.impressions {
                        out.appendRaw(preBytes)
                        out.appendRaw(UnsafeRawBufferPointer(rebasing: all[itemOffsets[imp.item]..<itemOffsets[imp.item + 1]]))
                        out.comma()
                        out.appendByte(zero &+ UInt8(imp.relevance))
                        out.comma()
                        out.appendByte(imp.click ? one : zero)
                        out.comma()
                        out.appendByte(imp.cart ? one : zero)
                        out.comma()
                        out.appendByte(imp.order ? one : zero)
                        out.comma()
                        out.appendSignificant(imp.truthClick, digits: 7)
                        out.comma()
                        out.appendSignificant(imp.truthCart, digits: 7)
                        out.comma()
                        out.appendSignificant(imp.truthOrder, digits: 7)
                        out.endRow()
                        stats.rows += 1
                        if imp.click { stats.clicks += 1 }
                        if imp.cart { stats.carts += 1 }
                        if imp.order { stats.orders += 1 }
                        stats.sumTruthClick += imp.truthClick
                        stats.sumTruthCart += imp.truthCart
                        stats.sumTruthOrder += imp.truthOrder
                    }
                }
                if request.isTest { testStats = stats } else { trainStats = stats }
                if let progress, r & 255 == 255 {
                    let now = clock.now
                    if now - lastReport >= .seconds(1) {
                        lastReport = now
                        progress(GenerationProgress(requestsDone: r + 1, requestsTotal: config.requests,
                                                    rows: trainStats.rows + testStats.rows, seconds: seconds(now - streamStart)))
                    }
                }
            }
        }
        try train.close()
        try test.close()
        let streamSeconds = seconds(clock.now - streamStart)
        return GenerationReport(config: config, intercepts: world.intercepts, features: features,
                                train: trainStats, test: testStats, worldSeconds: worldSeconds,
                                streamSeconds: streamSeconds,
                                bytesWritten: itemsCSV.bytesWritten + train.bytesWritten + test.bytesWritten + yaml.utf8.count)
    }

    /// `value` with exactly `decimals` fraction digits.
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let n = Int((value * scale).rounded())
        let whole = n / Int(scale)
        let frac = String(n % Int(scale))
        return decimals == 0 ? String(whole) : "\(whole)." + String(repeating: "0", count: decimals - frac.count) + frac
    }

    static func seconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
