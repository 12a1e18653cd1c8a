import Foundation
import TwinTower

/// Settings of `prerank train` (SPEC §4).
public struct TrainingConfig: Sendable {
    public var architecture: Architecture
    public var epochs = 4
    public var batch = 512
    public var learningRate: Float = 0.002
    /// Embedding tables learn slower and decay: id fields overfit within 1–2 epochs otherwise.
    public var embeddingLearningRate: Float = 0.002
    public var embeddingL2: Float = 1e-4
    /// Positive-example weight per task name (the paper used up to 500 for CTCVR).
    public var positiveWeights: [String: Float] = [:]
    public var seed: UInt64 = 1
    public var validationFraction = 0.1
    public var patience = 2
    public var shuffleBuffer = 16384
    public var skipBadRows = false
    public var version = "trained"

    public init(architecture: Architecture) { self.architecture = architecture }
}

/// Per-epoch validation figures.
public struct EpochReport: Sendable {
    public var epoch: Int
    public var trainLoss: Double
    public var validationAUC: [String: Double]
    public var validationLogLoss: [String: Double]
    public var samplesPerSecond: Double
}

public struct TrainingReport: Sendable {
    public var epochs: [EpochReport]
    public var bestEpoch: Int
    public var trainRows: Int
    public var validationRows: Int
    public var skippedRows: Int
}

/// Joint training of both towers of every task: weighted BCE per task through the logit chain,
/// Adam for towers and heads, lazy Adam with L2 for the embedding rows a batch touches, a
/// held-out split of request ids, early stopping on mean validation AUC (best epoch kept).
public enum Trainer {
    public typealias ProgressHandler = (_ epoch: Int, _ rows: Int, _ totalRows: Int, _ loss: Double, _ rate: Double) -> Void

    public static func train(features: FeaturesFile, data: String, config: TrainingConfig,
                             progress: ProgressHandler? = nil) throws(FormatError) -> (Model, TrainingReport) {
        BLASThreads.set(1)
        let spec = ModelSpec(version: config.version, tasks: features.tasks, architecture: config.architecture, features: features.features)
        var rng = SplitMix64(seed: config.seed)
        var model = ModelStore.random(spec: spec, using: &rng)
        // Embedding init small (the tower init assumes unit-scale inputs).
        for (name, table) in model.embeddings { model.embeddings[name] = table.map { $0 * 0.1 } }
        for k in model.headBias.indices { model.headBias[k] = -2 }

        // Pass 1: dense statistics and row count.
        let stats = try denseStatistics(path: data, model: model, skipBadRows: config.skipBadRows)
        model.denseMean = stats.mean
        model.denseStd = stats.std
        let validationCut = UInt64(config.validationFraction * Double(UInt64.max))
        func isValidation(_ key: UInt64) -> Bool { SplitMix64.mix(key ^ 0x5EED) < validationCut }

        var optimiser = Optimiser(model: model)
        let posWeight = model.spec.tasks.map { config.positiveWeights[$0.name] ?? 1 }
        var best: (auc: Double, model: Model, epoch: Int)? = nil
        var reports: [EpochReport] = []
        var sinceBest = 0
        var trainRows = 0, validationRows = 0, skipped = 0
        for epoch in 1...max(1, config.epochs) {
            let started = Date()
            var reader = try TrainingRowReader(path: data, model: model, skipBadRows: config.skipBadRows)
            var buffer: [TrainingRowReader.Row] = []
            var lossSum = 0.0, seen = 0
            var shuffle = SplitMix64(seed: config.seed &+ UInt64(epoch))
            func drain(keep: Int) {
                buffer.shuffle(using: &shuffle)
                while buffer.count > keep {
                    let n = min(config.batch, buffer.count - keep)
                    let batch = Array(buffer.suffix(n))
                    buffer.removeLast(n)
                    lossSum += Double(optimiser.step(model: &model, batch: batch, posWeight: posWeight, config: config))
                    seen += n
                    if seen % (config.batch * 32) < n {
                        progress?(epoch, seen, stats.rows, lossSum / Double(seen), Double(seen) / Date().timeIntervalSince(started))
                    }
                }
            }
            var validation = Evaluation(tasks: model.spec.tasks.count)
            var v = 0
            while let row = try reader.next() {
                if isValidation(row.requestKey) { v += 1; continue }
                buffer.append(row)
                if buffer.count >= config.shuffleBuffer { drain(keep: config.shuffleBuffer / 2) }
            }
            drain(keep: 0)
            skipped = reader.skipped
            trainRows = seen
            validationRows = v
            let rate = Double(seen) / max(Date().timeIntervalSince(started), 1e-9)
            // Validation pass (streamed again: memory stays bounded).
            if v > 0 {
                var vr = try TrainingRowReader(path: data, model: model, skipBadRows: true)
                var chunk: [TrainingRowReader.Row] = []
                while let row = try vr.next() {
                    guard isValidation(row.requestKey) else { continue }
                    chunk.append(row)
                    if chunk.count == 4096 { validation.add(model: model, rows: chunk); chunk.removeAll(keepingCapacity: true) }
                }
                validation.add(model: model, rows: chunk)
            }
            let names = model.spec.tasks.map(\.name)
            let aucs = validation.aucs()
            let report = EpochReport(epoch: epoch, trainLoss: lossSum / Double(max(seen, 1)),
                                     validationAUC: Dictionary(uniqueKeysWithValues: zip(names, aucs)),
                                     validationLogLoss: Dictionary(uniqueKeysWithValues: zip(names, validation.logLosses())),
                                     samplesPerSecond: rate)
            reports.append(report)
            progress?(epoch, seen, stats.rows, report.trainLoss, rate)
            let score = aucs.isEmpty ? -report.trainLoss : aucs.reduce(0, +) / Double(aucs.count)
            if best == nil || score > best!.auc || v == 0 {
                best = (score, model, epoch)
                sinceBest = 0
            } else {
                sinceBest += 1
                if sinceBest >= config.patience { break }
            }
        }
        var final = best?.model ?? model
        final.fingerprint = ""
        return (final, TrainingReport(epochs: reports, bestEpoch: best?.epoch ?? reports.count, trainRows: trainRows,
                                      validationRows: validationRows, skippedRows: skipped))
    }

    struct DenseStats { var mean: [Side: [Float]]; var std: [Side: [Float]]; var rows: Int }

    /// Mean and standard deviation of each dense field (missing values skipped; a constant
    /// field gets std 1 so it encodes as 0 offsets rather than dividing by zero).
    static func denseStatistics(path: String, model: Model, skipBadRows: Bool) throws(FormatError) -> DenseStats {
        var reader = try CSVReader(path: path)
        let columns = reader.columns
        var sums: [Side: [(Double, Double, Int)]] = [:]
        var cols: [Side: [Int?]] = [:]
        for side in Side.allCases {
            let dense = model.spec.fields(of: side).filter { $0.kind == .dense }
            sums[side] = Array(repeating: (0, 0, 0), count: dense.count)
            cols[side] = dense.map { columns[$0.name] }
        }
        var rows = 0
        while let cells = try reader.next() {
            rows += 1
            guard cells.count == reader.header.count else {
                if skipBadRows { continue }
                throw FormatError(path, "line \(reader.line): \(cells.count) columns, header has \(reader.header.count)")
            }
            for side in Side.allCases {
                for (i, c) in (cols[side] ?? []).enumerated() {
                    guard let c else { continue }
                    let t = cells[c].trimmingSpaces()
                    if t.isEmpty { continue }
                    guard let v = Double(t), v.isFinite else {
                        if skipBadRows { continue }
                        throw FormatError(path, "line \(reader.line): \"\(cells[c])\" is not a finite number (column \(reader.header[c]))")
                    }
                    sums[side]![i].0 += v
                    sums[side]![i].1 += v * v
                    sums[side]![i].2 += 1
                }
            }
        }
        guard rows > 0 else { throw FormatError(path, "no training rows") }
        var mean: [Side: [Float]] = [:], std: [Side: [Float]] = [:]
        for side in Side.allCases {
            mean[side] = sums[side]!.map { $0.2 > 0 ? Float($0.0 / Double($0.2)) : 0 }
            std[side] = sums[side]!.map { s in
                guard s.2 > 1 else { return 1 }
                let m = s.0 / Double(s.2)
                let variance = max(s.1 / Double(s.2) - m * m, 0)
                let sd = variance.squareRoot()
                return sd > 1e-6 ? Float(sd) : 1
            }
        }
        return DenseStats(mean: mean, std: std, rows: rows)
    }
}
