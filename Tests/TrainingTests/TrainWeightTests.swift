import Foundation
import Testing
import TwinTower
@testable import Training

/// `prerank train --weight-column`: a row of integer weight k trains exactly as k copies of it, a
/// row of weight 0 as its absence (the batch loss is Σ w ℓ / Σ w), and bad weights stop with the
/// file, line and column.
@Suite struct TrainWeightTests {
    static let features = FeaturesFile(tasks: TrainingRowsTests.spec.tasks, features: TrainingRowsTests.spec.features)

    /// Six distinct rows (both tasks' labels vary, multi and missing values, dense values).
    static let header = "request_id,uid,age,words,item_id,price,click,order"
    static let rows = [
        "r1,u1,30,red|shoes,101,12.5,1,1",
        "r1,u2,,big,102,,0,0",
        "r2,42,41.5,red||big,103,7,1,0",
        "r3,,22,shoes,104,3,0,0",
        "r4,u1,35,,101,9,1,0",
        "r5,u3,28,big|red,105,4.5,0,0",
    ]
    static let weights = [1, 3, 0, 1, 2, 1]

    func write(_ lines: [String]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weights-\(UUID().uuidString).csv").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func config(weightColumn: String?) -> TrainingConfig {
        var c = TrainingConfig(architecture: TrainingRowsTests.spec.architecture)
        c.batch = 64  // every row in one batch: an epoch is one step
        c.learningRate = 0.01
        c.embeddingLearningRate = 0.01
        c.validationFraction = 0
        c.minCount = 0
        c.idFields = []
        c.idDropout = 0
        c.idWarmupEpochs = 0
        c.threads = 1
        c.weightColumn = weightColumn
        c.positiveWeights = ["ctcvr": 3]  // combined multiplicatively with the row weight
        return c
    }

    /// Every parameter of a model, flattened in a fixed order.
    func parameters(_ m: Model) -> [Float] {
        var out: [Float] = []
        for tower in [m.userTower, m.itemTower] {
            for task in tower.layers { for block in task { out += block.weight + block.bias } }
        }
        for name in m.embeddings.keys.sorted() { out += m.embeddings[name]! }
        return out + m.headBias
    }

    /// Trains `steps` full-batch steps on `csv` and returns the parameters, the last epoch's loss,
    /// the rows and the heads' start. `start` replaces the dense mean/std (which describe the
    /// inputs, not the objective, so they are over every row, whatever its weight) and the heads'
    /// start (smoothed base rates, which count rows): what is compared is the steps.
    func train(_ path: String, weightColumn: String?, steps: Int, start: (rows: TrainingData, heads: [Float])? = nil) throws
        -> (params: [Float], loss: Double, rows: TrainingData, heads: [Float]) {
        let c = config(weightColumn: weightColumn)
        let (spec, encoded) = try TrainingSession.encode(features: Self.features, data: path, config: c)
        var rows = encoded
        if let start {
            rows.denseMean = start.rows.denseMean
            rows.denseStd = start.rows.denseStd
        }
        var session = TrainingSession(spec: spec, rows: rows, config: c, headBias: start?.heads)
        let heads = session.model.headBias
        var loss = 0.0
        for epoch in 1...steps { loss = session.runEpoch(epoch).loss }
        return (parameters(session.model), loss, rows, heads)
    }

    @Test(arguments: [1, 3])
    func aRowOfWeightKStepsAsKCopiesAndWeightZeroAsAbsent(steps: Int) throws {
        let weighted = try write([Self.header + ",w"] + zip(Self.rows, Self.weights).map { "\($0),\($1)" })
        let repeated = try write([Self.header] + zip(Self.rows, Self.weights).flatMap { Array(repeating: $0, count: $1) })
        defer { for p in [weighted, repeated] { try? FileManager.default.removeItem(atPath: p) } }

        let w = try train(weighted, weightColumn: "w", steps: steps)
        #expect(w.rows.trainWeight == 8 && w.rows.weightedPositives == [3, 1])
        let r = try train(repeated, weightColumn: nil, steps: steps, start: (w.rows, w.heads))
        #expect(r.rows.train.count == 8 && r.rows.weightedPositives == [3, 1])
        let ignored = try train(weighted, weightColumn: nil, steps: steps, start: (w.rows, w.heads))  // the column unread
        #expect(w.params.count == r.params.count && w.params.count == ignored.params.count)

        let moved = zip(w.params, ignored.params).map { abs($0 - $1) }.max() ?? 0
        let diff = zip(w.params, r.params).map { abs($0 - $1) }.max() ?? 0
        // Same steps up to float summation order; ignoring the weights moves parameters by ~lr.
        #expect(diff < 1e-5, "weighted vs repeated rows: largest parameter difference \(diff)")
        #expect(moved > 1e-3, "weights made no difference (\(moved))")
        #expect(abs(w.loss - r.loss) < 1e-5 * max(1, abs(r.loss)), "loss \(w.loss) vs \(r.loss)")
    }

    /// Scaling every weight by c changes nothing (Σ w ℓ / Σ w); weights all 1 equal no weights.
    @Test func weightsAreRelative() throws {
        let ones = try write([Self.header + ",w"] + Self.rows.map { "\($0),1" })
        let fives = try write([Self.header + ",w"] + Self.rows.map { "\($0),5" })
        defer { for p in [ones, fives] { try? FileManager.default.removeItem(atPath: p) } }
        let a = try train(ones, weightColumn: nil, steps: 2)
        let b = try train(ones, weightColumn: "w", steps: 2)
        let c = try train(fives, weightColumn: "w", steps: 2)
        #expect(a.params == b.params && a.heads == b.heads)  // bit for bit: w = 1 multiplies by 1
        #expect(zip(a.heads, c.heads).allSatisfy { abs($0 - $1) < 1e-6 })  // smoothed in units of the mean weight
        #expect((zip(a.params, c.params).map { abs($0 - $1) }.max() ?? 0) < 1e-6)
    }

    /// A batch whose weights are all 0 takes no step (Adam would otherwise move on momentum).
    @Test func allZeroWeightsTrainNothing() throws {
        let zeros = try write([Self.header + ",w"] + Self.rows.map { "\($0),0" })
        defer { try? FileManager.default.removeItem(atPath: zeros) }
        let c = config(weightColumn: "w")
        let (spec, rows) = try TrainingSession.encode(features: Self.features, data: zeros, config: c)
        var session = TrainingSession(spec: spec, rows: rows, config: c)
        let before = parameters(session.model)
        let (loss, _) = session.runEpoch(1)
        #expect(parameters(session.model) == before && loss == 0)
    }

    @Test func badWeightsStopWithFileLineAndColumn() throws {
        for bad in ["-1", "nan", "inf", "", "x", "1e999"] {
            let path = try write([Self.header + ",wt", Self.rows[0] + ",1", Self.rows[1] + ",\(bad)"])
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect {
                _ = try TrainingSession.encode(features: Self.features, data: path, config: config(weightColumn: "wt"))
            } throws: { error in
                let text = "\(error)"
                return text.hasPrefix(path + ": line 3: weight \"\(bad)\"") && text.contains("(column wt)") && !text.contains("\n")
            }
            var skip = config(weightColumn: "wt")
            skip.skipBadRows = true
            let (_, rows) = try TrainingSession.encode(features: Self.features, data: path, config: skip)
            #expect(rows.skipped == 1 && rows.train.count == 1)
        }
        let path = try write([Self.header, Self.rows[0]])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect {
            _ = try TrainingSession.encode(features: Self.features, data: path, config: config(weightColumn: "weight"))
        } throws: { "\($0)" == "\(path): no weight column weight (--weight-column)" }
    }

    /// Weighted AUC and log-loss with integer weights equal the unweighted figures of the rows
    /// repeated (ties included); weight 0 drops a row.
    @Test func weightedValidationMetricsEqualRepeatedRows() {
        let scores: [Double] = [0.9, 0.4, 0.4, 0.2, 0.7, 0.4, 0.1]
        let labels: [Double] = [1, 0, 1, 0, 0, 1, 0]
        let weights: [Double] = [2, 1, 3, 0, 1, 2, 4]
        var rs: [Double] = [], rl: [Double] = []
        for i in scores.indices {
            for _ in 0..<Int(weights[i]) { rs.append(scores[i]); rl.append(labels[i]) }
        }
        let auc = Metrics.auc(scores: scores, labels: labels, weights: weights)
        let expected = Metrics.auc(scores: rs, labels: rl)
        #expect(auc != nil && abs(auc! - expected!) < 1e-12)
        let ll = Metrics.logLoss(probabilities: scores, labels: labels, weights: weights)
        #expect(abs(ll! - Metrics.logLoss(probabilities: rs, labels: rl)!) < 1e-12)
        #expect(Metrics.auc(scores: scores, labels: labels, weights: labels.map { $0 > 0 ? 1 : 0 }) == nil)
    }
}
