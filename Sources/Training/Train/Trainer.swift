import Foundation
import TwinTower

/// Settings of `prerank train` (SPEC §4).
public struct TrainingConfig: Sendable {
    public var architecture: Architecture
    /// The cap on epochs: a run at the defaults ends by `patience` long before it (issue 25).
    public var epochs = TrainingConfig.defaultEpochs
    public static let defaultEpochs = 40
    public var batch = 512
    public var learningRate: Float = 0.002
    /// Embedding tables learn slower and decay: id fields overfit within 1–2 epochs otherwise.
    public var embeddingLearningRate: Float = 0.002
    public var embeddingL2: Float = TrainingConfig.defaultEmbeddingL2
    public static let defaultEmbeddingL2: Float = 1e-4
    /// Positive-example weight per task name (the paper used up to 500 for CTCVR).
    public var positiveWeights: [String: Float] = [:]
    public var seed: UInt64 = 1
    public var validationFraction = 0.1
    /// Epochs without a better validation score that end the warm start, and then the run.
    public var patience = 2
    public var shuffleBuffer = 16384
    public var skipBadRows = false
    /// 2: the user and item sides of each step run on two threads; 1: one after the other
    /// (same weights either way).
    public var threads = 2
    public var version = "trained"
    /// `--weight-column`: each training row's loss on every task is multiplied by this column's
    /// value (finite, ≥ 0); the batch loss is `Σ w ℓ / Σ w` (Optimiser.step). nil: weight 1.
    public var weightColumn: String? = nil
    /// `--weighted-validation`: validation AUC and log-loss (early stopping, model.json) weigh rows
    /// by the weight column too. Off by default: see docs/TRAINING.md "Sample weights".
    public var weightedValidation = false

    // Id fields (issue 13; docs/TRAINING.md "Id fields" has the measurements behind the defaults).
    /// Feature admission: a bucket with fewer training values shares the OOV row (0: off).
    public var minCount = TrainingConfig.defaultMinCount
    public static let defaultMinCount = 5
    /// Id field names; nil: categorical fields with ≥ `IDFields.minimumBuckets` buckets.
    public var idFields: [String]? = nil
    /// Probability that a training row reads an id field from the OOV row instead (per field).
    public var idDropout: Float = TrainingConfig.defaultIDDropout
    public static let defaultIDDropout: Float = 0.5
    /// The first epochs read every id field from the OOV row (warm start); then each id row starts
    /// as the OOV vector of the best warm-start epoch. nil: until validation stops improving for
    /// `patience` epochs (EpochSchedule.swift); N: N epochs. Either way at most `epochs − 1`.
    /// When the ids never beat the warm start on validation, every id row is exported as the OOV
    /// vector (the kept model never read ids).
    public var idWarmupEpochs: Int? = nil
    /// The fixed warm start of `--id-warmup-epochs` before issue 25, and the warm start used
    /// when there are no validation rows to find the plateau on.
    public static let defaultIDWarmupEpochs = 3
    var warmStart: EpochSchedule.WarmStart { idWarmupEpochs.map { $0 > 0 ? .epochs($0) : .none } ?? .untilPlateau }
    /// Multiplies every learning rate (towers, heads, tables) from the first id epoch on: the
    /// attribute side has converged by then, and the ids should add to it, not move it.
    public var idPhaseLearningRateScale: Float = TrainingConfig.defaultIDPhaseLearningRateScale
    public static let defaultIDPhaseLearningRateScale: Float = 0.1
    /// Multiplies the embedding learning rate on id fields.
    public var idLearningRateScale: Float = 1
    /// `dim` of the id fields (nil: features.yaml's).
    public var idDim: Int? = nil

    public init(architecture: Architecture) { self.architecture = architecture }
}

/// Per-epoch validation figures.
public struct EpochReport: Sendable {
    public var epoch: Int
    public var trainLoss: Double
    /// Per task; a task whose AUC is undefined on the split (no positive or no negative) is absent.
    public var validationAUC: [String: Double]
    public var validationLogLoss: [String: Double]
    public var samplesPerSecond: Double
    /// Whether the epoch read the id fields (false: warm start, or no id fields).
    public var readIDs = false
    /// The score early stopping compares: mean validation AUC over the tasks where it is defined
    /// (minus the training loss without validation rows).
    public var score = 0.0
}

public struct TrainingReport: Sendable {
    public var epochs: [EpochReport]
    public var bestEpoch: Int
    /// Why the run ended: validation stopped improving, or `epochs` ran out.
    public var stopped: StopReason = .maxEpochs
    /// Why the id warm start ended (nil: no warm start ran).
    public var warmStartEnded: WarmStartEnd? = nil
    /// Epochs of warm start run (0: none).
    public var warmStartEpochs = 0
    /// The first epoch that read ids (nil: no id epoch ran).
    public var firstIDEpoch: Int? = nil
    public var trainRows: Int
    public var validationRows: Int
    public var skippedRows: Int
    /// Per categorical/multi field: seen, admitted and OOV figures of the training rows.
    public var vocabulary: [FieldVocabulary] = []
}

/// Joint training of both towers of every task: weighted BCE per task through the logit chain,
/// Adam for towers and heads, lazy Adam with L2 for the embedding rows a batch touches, a
/// held-out split of request ids, early stopping on mean validation AUC (best epoch kept).
public enum Trainer {
    public typealias ProgressHandler = (_ epoch: Int, _ rows: Int, _ totalRows: Int, _ loss: Double, _ rate: Double) -> Void

    /// - parameter epochEnded: called after each epoch with its figures and the schedule's
    ///   decision (the CLI's per-epoch line).
    public static func train(features: FeaturesFile, data: String, config: TrainingConfig,
                             progress: ProgressHandler? = nil,
                             epochEnded: ((EpochReport, EpochDecision) -> Void)? = nil) throws(FormatError) -> (Model, TrainingReport) {
        var session = try TrainingSession(features: features, data: data, config: config)
        var schedule = EpochSchedule(maxEpochs: config.epochs, patience: config.patience,
                                     warmStart: session.idMask == 0 ? .none : config.warmStart)
        session.readsIDs = schedule.phase == .ids
        var models: [Int: Model] = [:]  // the best epoch's model (one entry)
        var reports: [EpochReport] = []
        var stopped = StopReason.maxEpochs
        var epoch = 0
        while true {
            epoch += 1
            let (loss, rate) = session.runEpoch(epoch, progress: progress)
            let validation = session.validate()
            let names = session.model.taskNames
            // Undefined figures are left out of the dictionaries (read back as nil → null).
            let defined = zip(names, validation.aucs()).compactMap { name, auc in auc.map { (name, $0) } }
            let aucs = defined.map(\.1)
            let score = aucs.isEmpty ? -loss : aucs.reduce(0, +) / Double(aucs.count)
            let report = EpochReport(epoch: epoch, trainLoss: loss,
                                     validationAUC: Dictionary(uniqueKeysWithValues: defined),
                                     validationLogLoss: Dictionary(uniqueKeysWithValues: zip(names, validation.logLosses())
                                        .compactMap { name, v in v.map { (name, $0) } }),
                                     samplesPerSecond: rate, readIDs: session.readsIDs, score: score)
            reports.append(report)
            let action = schedule.record(epoch: epoch, score: session.validationRows > 0 ? score : nil)
            if schedule.best?.epoch == epoch { models = [epoch: session.model] }
            // Epochs since the best, read before the schedule resets its count for the id phase.
            let bestSoFar = schedule.best?.epoch ?? epoch
            epochEnded?(report, EpochDecision(action: action, bestEpoch: bestSoFar, sinceBest: epoch - bestSoFar,
                                              patience: config.patience))
            if case .stop(let reason) = action {
                stopped = reason
                break
            }
            if case .startIDs(let restoring) = action {
                if let m = models[restoring] { session.restore(m) }
                session.startIDsFromOOV()
            }
        }
        let bestEpoch = schedule.best?.epoch ?? reports.count
        let idsOff = schedule.firstIDEpoch.map { bestEpoch < $0 } ?? true
        var final = session.admission.export(models[bestEpoch] ?? session.model, idsOff: idsOff)
        final.fingerprint = ""
        var report = TrainingReport(epochs: reports, bestEpoch: bestEpoch, trainRows: session.trainRows,
                                    validationRows: session.validationRows, skippedRows: session.rows.skipped,
                                    vocabulary: session.admission.vocabulary())
        report.stopped = stopped
        report.warmStartEnded = schedule.warmStartEnd
        report.firstIDEpoch = schedule.firstIDEpoch.flatMap { $0 <= reports.count ? $0 : nil }
        report.warmStartEpochs = schedule.warmStart == .none ? 0 : (schedule.firstIDEpoch.map { $0 - 1 } ?? reports.count)
        return (final, report)
    }

    /// Head biases `c_k` that make the untrained chain predict each task's base rate, so the first
    /// batches do not spend themselves learning a constant (CTCVR is ~0.2 %: logit −6).
    ///
    /// Rates `p_k = (P_k + u) / (W + 2u)`: `P_k` the (weighted) positives, `W` the (weighted) rows,
    /// `u = W / rows` the mean weight (1 without weights: the add-one smoothing it always was; with
    /// weights, rescaling every weight changes nothing).
    /// With rates `p_k`: additive with the logit residual `c_k = logit p_k − logit p_{k−1}`;
    /// additive without it `c_k = logit p_k`; multiplicative `c_k = logit(p_k / p_{k−1})`.
    static func initialHeads(architecture: Architecture, positives: [Double], weight: Double, rows: Int) -> [Float] {
        let unit = rows > 0 && weight > 0 ? weight / Double(rows) : 1
        let rates = positives.map { ($0 + unit) / (weight + 2 * unit) }
        func logit(_ p: Double) -> Double { log(p / (1 - p)) }
        return rates.indices.map { k in
            let previous = k > 0 ? rates[k - 1] : 1
            switch architecture.chain {
            case .multiplicative: return Float(logit(min(rates[k] / previous, 1 - 1e-6)))
            case .additive: return Float(architecture.lr && k > 0 ? logit(rates[k]) - logit(previous) : logit(rates[k]))
            }
        }
    }
}

/// A model being trained on encoded rows: what `Trainer` runs epoch by epoch, and what the
/// training benchmark times.
struct TrainingSession {
    /// `learningRate` and `embeddingLearningRate` change once ids start (`idPhaseLearningRateScale`).
    private(set) var config: TrainingConfig
    let rows: TrainingData
    let assembler: BatchAssembler
    let admission: Admission
    /// Bit g: embedded field g (record order) is an id field.
    let idMask: UInt64
    private(set) var model: Model
    private var optimiser: Optimiser
    private let posWeight: [Float]
    private var order: [Int]
    /// false during warm start: every id field reads the OOV row, in training and validation.
    var readsIDs = true
    var trainRows: Int { rows.train.count }
    var validationRows: Int { rows.validation.count }

    /// Reads and encodes `data` once (validating every row) and initialises the model.
    init(features: FeaturesFile, data: String, config: TrainingConfig) throws(FormatError) {
        let (spec, rows) = try Self.encode(features: features, data: data, config: config)
        self.init(spec: spec, rows: rows, config: config)
    }

    /// The model spec for `features` and one pass over the CSV: validate, hash, split by
    /// `config.validationFraction`, dense statistics (see TrainingRows.swift). The encoded rows
    /// stay mapped after their files are removed.
    static func encode(features: FeaturesFile, data: String, config: TrainingConfig) throws(FormatError) -> (ModelSpec, TrainingData) {
        let ids = try IDFields.resolve(features.features, explicit: config.idFields)
        var fields = features.features
        if let d = config.idDim {
            for i in fields.indices where ids.contains(fields[i].name) { fields[i].dim = d }
        }
        let spec = ModelSpec(version: config.version, tasks: features.tasks, architecture: config.architecture, features: fields)
        let cache = try TemporaryDirectory(prefix: "prerank-train")
        defer { cache.remove() }
        let validationCut = UInt64(config.validationFraction * Double(UInt64.max))
        let rows = try TrainingRowReader(path: data, spec: spec, skipBadRows: config.skipBadRows, weightColumn: config.weightColumn)
            .read(into: cache.path) { SplitMix64.mix($0 ^ 0x5EED) < validationCut }
        return (spec, rows)
    }

    /// - parameter headBias: the heads' start instead of the (weighted) base rates (tests).
    init(spec: ModelSpec, rows: TrainingData, config: TrainingConfig, headBias: [Float]? = nil) {
        BLASThreads.set(1)
        var rng = SplitMix64(seed: config.seed)
        var model = ModelStore.random(spec: spec, using: &rng)
        // Embedding init small (the tower init assumes unit-scale inputs); one more row per table,
        // the OOV row (Admission.swift), drawn after every other weight.
        for f in spec.features where f.kind != .dense {
            let dim = f.dim ?? 0
            let oov = (0..<dim).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
            model.embeddings[f.name] = (model.embeddings[f.name] ?? []).map { $0 * 0.1 } + oov.map { $0 * 0.1 }
        }
        let ids = (try? IDFields.resolve(spec.features, explicit: config.idFields)) ?? []
        admission = Admission(spec: spec, counts: rows.counts, minCount: config.minCount, idFields: ids)
        idMask = admission.fields.enumerated().reduce(0) { $0 | ($1.element.isID ? 1 << UInt64($1.offset) : 0) }
        model.denseMean = rows.denseMean
        model.denseStd = rows.denseStd
        // Weighted base rates (the plain ones without a weight column).
        model.headBias = headBias ?? Trainer.initialHeads(architecture: config.architecture, positives: rows.weightedPositives,
                                                          weight: rows.trainWeight, rows: rows.train.count)
        self.config = config
        self.rows = rows
        self.model = model
        assembler = BatchAssembler(spec: spec, denseMean: rows.denseMean, denseStd: rows.denseStd, admission: admission,
                                   weighted: config.weightColumn != nil)
        optimiser = Optimiser(model: model, assembler: assembler, threads: config.threads,
                              lrScale: Dictionary(uniqueKeysWithValues: ids.map { ($0, config.idLearningRateScale) }))
        posWeight = spec.tasks.map { config.positiveWeights[$0.name] ?? 1 }
        order = Array(0..<rows.train.count)
    }

    /// One pass over a fresh permutation of every training row (deterministic by seed and epoch),
    /// at most `limit` rows. Returns the mean training loss (weighted: `Σ w ℓ / Σ w`) and the rate
    /// in rows per second.
    mutating func runEpoch(_ epoch: Int, limit: Int = .max, progress: Trainer.ProgressHandler? = nil) -> (loss: Double, rate: Double) {
        let started = Date()
        var shuffle = SplitMix64(seed: config.seed &+ UInt64(epoch))
        order.shuffle(using: &shuffle)
        var dropRNG = SplitMix64(seed: config.seed, stream: 0xD20F, index: UInt64(max(epoch, 0)))
        let total = min(trainRows, limit)
        var lossSum = 0.0, weightSum = 0.0, seen = 0
        while seen < total {
            let n = min(config.batch, total - seen)
            let dropped = dropMasks(count: n, epoch: epoch, rng: &dropRNG)
            let batch = assembler.assemble(Array(order[seen..<(seen + n)]), from: rows.train, embeddings: model.embeddings, dropped: dropped)
            let step = optimiser.step(model: &model, batch: batch, data: rows.train, assembler: assembler,
                                      posWeight: posWeight, config: config)
            lossSum += Double(step.loss)
            weightSum += Double(step.weight)
            seen += n
            if seen % (config.batch * 32) < n {
                progress?(epoch, seen, total, lossSum / max(weightSum, 1e-12), Double(seen) / Date().timeIntervalSince(started))
            }
        }
        return (weightSum > 0 ? lossSum / weightSum : 0, Double(seen) / max(Date().timeIntervalSince(started), 1e-9))
    }

    /// Per row of a training batch, the id fields read from the OOV row: all of them during warm
    /// start, each with probability `idDropout` after (`[]`: none).
    func dropMasks(count: Int, epoch: Int, rng: inout SplitMix64) -> [UInt64] {
        guard idMask != 0 else { return [] }
        if !readsIDs { return [UInt64](repeating: idMask, count: count) }
        guard config.idDropout > 0 else { return [] }
        // Double(UInt64.max) is 2^64, which UInt64 cannot hold: p = 1 clamps to UInt64.max (the
        // same cut prerank_torch's swiftrng.dropout_cut computes).
        let scaled = Double(min(config.idDropout, 1)) * Double(UInt64.max)
        let cut = scaled >= Double(UInt64.max) ? UInt64.max : UInt64(scaled)
        return (0..<count).map { _ in
            var m: UInt64 = 0
            var bits = idMask
            while bits != 0 {
                let bit = bits & (~bits &+ 1)
                if rng.next() < cut { m |= bit }
                bits &= bits &- 1
            }
            return m
        }
    }

    /// Back to an earlier epoch's weights (the optimiser's moments stay as they are).
    mutating func restore(_ earlier: Model) { model = earlier }

    /// End of warm start: every id row starts as the OOV vector the towers learnt to read, so an
    /// id moves away from "unknown" only as far as its own rows' gradients take it. Ids are read
    /// from the next epoch on.
    mutating func startIDsFromOOV() {
        readsIDs = true
        config.learningRate *= config.idPhaseLearningRateScale
        config.embeddingLearningRate *= config.idPhaseLearningRateScale
        for f in admission.fields where f.isID {
            guard var t = model.embeddings[f.name] else { continue }
            let oov = Array(t[(f.oovRow * f.dim)..<((f.oovRow + 1) * f.dim)])
            for b in 0..<f.buckets { for j in 0..<f.dim { t[b * f.dim + j] = oov[j] } }
            model.embeddings[f.name] = t
        }
    }

    /// Probabilities of the current model on the validation rows, read as the exported model
    /// will be (admission map; id fields from the OOV row while warm start keeps them off).
    func validate() -> Evaluation {
        var validation = Evaluation(tasks: model.spec.tasks.count, weighted: config.weightedValidation && assembler.weighted)
        var v = 0
        let idsOff = !readsIDs && idMask != 0
        while v < validationRows {
            let n = min(4096, validationRows - v)
            let dropped = idsOff ? [UInt64](repeating: idMask, count: n) : []
            validation.add(model: model, batch: assembler.assemble(Array(v..<(v + n)), from: rows.validation,
                                                                   embeddings: model.embeddings, dropped: dropped,
                                                                   withWeights: config.weightedValidation))
            v += n
        }
        return validation
    }
}
