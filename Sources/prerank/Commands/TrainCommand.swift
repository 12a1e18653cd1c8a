import ArgumentParser
import Foundation
import Training
import TwinTower

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train both towers of every task jointly and write a model directory.",
        discussion: """
            Weighted BCE per task through the logit chain, Adam for towers and heads, lazy Adam with
            L2 for touched embedding rows. The CSV is read and encoded once. A held-out share of
            request ids gives validation AUC per epoch. Id fields first read their out-of-vocabulary
            row (warm start) until validation stops improving for --patience epochs; training then
            continues from the best warm-start epoch with ids, every learning rate times
            --id-phase-lr-scale, until validation stops improving again. The best epoch of both
            phases is kept; --epochs is only a cap.
            """
    )

    @Option(help: "features.yaml (tasks and features).") var features: String
    @Option(help: "Training CSV (request_id, features, label columns).") var data: String
    @Option(help: "Output model directory.") var out: String
    @Option(help: "resflow, nse, nse+fr, nse+lr or esmm.") var arch: String = "resflow"
    @Flag(help: "Clamp residual logits at 0 for k > 0 (probabilities never increase).") var clamp = false
    @Option(help: "Positive weights per task, e.g. ctr=1,ctcvr=500.") var posWeight: String = ""
    @Option(parsing: .unconditional, help: "Epochs at most (a cap: at the defaults a run ends when validation stops improving).")
    var epochs: Int = TrainingConfig.defaultEpochs
    @Option(parsing: .unconditional, help: "Mini-batch size.") var batch: Int = 512
    @Option(parsing: .unconditional, help: "Adam learning rate.") var lr: Float = 0.002
    @Option(parsing: .unconditional, help: "Learning rate of the embedding tables (default: --lr).") var embeddingLr: Float?
    @Option(help: "L2 on the embedding rows a batch touches (hashed id tables memorise without it).") var embeddingL2: Float = TrainingConfig.defaultEmbeddingL2
    @Option(parsing: .unconditional, help: "Random seed (same seed and data: same weights).") var seed: UInt64 = 1
    @Option(help: "Hidden widths, comma-separated.") var hidden: String = "64,32"
    @Option(parsing: .unconditional, help: "Output width d.") var d: Int = 32
    @Option(parsing: .unconditional, help: "Share of request ids held out for validation.") var validationFraction: Double = 0.1
    @Option(parsing: .unconditional, help: "Epochs without validation improvement that end the id warm start, then the run.")
    var patience: Int = 2
    @Flag(help: "Skip and count malformed rows instead of stopping.") var skipBadRows = false
    @Option(parsing: .unconditional, help: "Threads: 2 runs the user and item sides of each step at once, 1 one after the other (same weights).")
    var threads: Int = 2
    @Option(help: "Model version string.") var version: String?
    @Option(help: "Feature admission: a categorical/multi bucket with fewer training values shares the field's out-of-vocabulary row (0: off).")
    var minCount: Int = TrainingConfig.defaultMinCount
    @Option(help: "Id fields, comma-separated (default: categorical fields with ≥ \(IDFields.minimumBuckets) buckets).")
    var idFields: String?
    @Option(help: "Probability that a training row reads an id field from the out-of-vocabulary row instead.")
    var idDropout: Float = TrainingConfig.defaultIDDropout
    @Option(help: "Warm start: id fields read the out-of-vocabulary row until validation stops improving (auto) or for N epochs (at most --epochs − 1); then every id row starts from it.")
    var idWarmupEpochs: String = "auto"
    @Option(help: "Multiplies the embedding learning rate on id fields.") var idLrScale: Float = 1
    @Option(help: "Multiplies every learning rate from the first epoch that reads ids (after the warm start).")
    var idPhaseLrScale: Float = TrainingConfig.defaultIDPhaseLearningRateScale
    @Option(help: "Embedding dim of the id fields (default: features.yaml's).") var idDim: Int?
    @Option(help: "Column of per-row loss weights (finite, ≥ 0; e.g. join-logs --dropped's weight): each row's loss on every task is multiplied by it, batch loss Σ w·ℓ / Σ w.")
    var weightColumn: String?
    @Flag(help: "Weigh validation rows by --weight-column in validation AUC and log-loss (default: unweighted).")
    var weightedValidation = false
    @Flag(help: "No per-batch progress lines (the per-epoch lines and the summary stay).") var quiet = false

    func run() throws {
        let widths = try hidden.split(separator: ",").map { part -> Int in
            guard let w = Int(part.trimmingCharacters(in: .whitespaces)), w >= 1 else { throw CLIError("--hidden must be positive integers") }
            return w
        }
        // Each flag named with the value given, one line (`--epochs -3` reaches here: numeric
        // options parse unconditionally).
        for (flag, value) in [("--d", d), ("--epochs", epochs), ("--batch", batch)] where value < 1 {
            throw CLIError("\(flag) must be ≥ 1, not \(value)")
        }
        guard lr > 0, lr.isFinite else { throw CLIError("--lr must be > 0, not \(lr)") }
        guard patience >= 0 else { throw CLIError("--patience must be ≥ 0, not \(patience)") }
        guard (embeddingLr ?? lr) > 0, (embeddingLr ?? lr).isFinite else { throw CLIError("--embedding-lr must be > 0") }
        guard embeddingL2 >= 0, embeddingL2.isFinite else { throw CLIError("--embedding-l2 must be ≥ 0") }
        guard threads == 1 || threads == 2 else { throw CLIError("--threads must be 1 or 2") }
        guard (0..<1).contains(validationFraction) else { throw CLIError("--validation-fraction must be in [0, 1)") }
        guard minCount >= 0 else { throw CLIError("--min-count must be ≥ 0") }
        guard (0...1).contains(idDropout) else { throw CLIError("--id-dropout must be in [0, 1]") }
        let warmup: Int?
        if idWarmupEpochs == "auto" {
            warmup = nil
        } else if let n = Int(idWarmupEpochs), n >= 0 {
            warmup = n
        } else {
            throw CLIError("--id-warmup-epochs must be auto or an integer ≥ 0, not \(idWarmupEpochs)")
        }
        guard idLrScale > 0, idLrScale.isFinite, (idDim ?? 1) >= 1 else {
            throw CLIError("--id-lr-scale must be > 0, --id-dim ≥ 1")
        }
        guard idPhaseLrScale > 0, idPhaseLrScale.isFinite else { throw CLIError("--id-phase-lr-scale must be > 0, not \(idPhaseLrScale)") }
        if let name = weightColumn, name.isEmpty { throw CLIError("--weight-column needs a column name") }
        if weightedValidation && weightColumn == nil { throw CLIError("--weighted-validation needs --weight-column") }
        guard let architecture = Architecture.named(arch, hidden: widths, d: d, clamp: clamp) else {
            throw CLIError("--arch must be resflow, nse, nse+fr, nse+lr or esmm, not \(arch)")
        }
        var config = TrainingConfig(architecture: architecture)
        config.epochs = epochs
        config.batch = batch
        config.learningRate = lr
        config.embeddingLearningRate = embeddingLr ?? lr
        config.embeddingL2 = embeddingL2
        config.seed = seed
        config.validationFraction = validationFraction
        config.patience = patience
        config.skipBadRows = skipBadRows
        config.threads = threads
        config.minCount = minCount
        config.idFields = idFields.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        config.idDropout = idDropout
        config.idWarmupEpochs = warmup
        config.idLearningRateScale = idLrScale
        config.idPhaseLearningRateScale = idPhaseLrScale
        config.idDim = idDim
        config.weightColumn = weightColumn
        config.weightedValidation = weightedValidation
        config.version = version ?? "\(arch)\(clamp ? "+clamp" : "")-seed\(seed)"
        for part in posWeight.split(separator: ",") where !part.isEmpty {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let w = Float(kv[1]), w > 0 else { throw CLIError("--pos-weight takes task=weight pairs, got \(part)") }
            config.positiveWeights[String(kv[0])] = w
        }
        do {
            let file = try FeaturesFile.load(path: features)
            for name in config.positiveWeights.keys where !file.tasks.contains(where: { $0.name == name }) {
                throw CLIError("--pos-weight names task \(name), which features.yaml does not have")
            }
            let started = Date()
            let taskNames = file.tasks.map(\.name)
            let batchLine: Trainer.ProgressHandler = { epoch, rows, total, loss, rate in
                let remaining = rate > 0 ? Double(max(total - rows, 0)) / rate : 0
                Progress.line(String(format: "train: epoch %d  %d/%d rows  loss %.4f  %.0f rows/s  ETA %.0fs", epoch, rows, total, loss, rate, remaining))
            }
            let (model, report) = try Trainer.train(features: file, data: data, config: config, progress: quiet ? nil : batchLine) { e, decision in
                for line in TrainOutput.epochLines(e, decision, taskNames: taskNames, maxEpochs: epochs) { Progress.line(line, final: true) }
            }
            for v in report.vocabulary {
                Progress.line(String(format: "train: %@%@: vocabulary %d of %d buckets, admitted %.1f%% (%d), OOV %.2f%% of %d values",
                                     v.name, v.isID ? " (id)" : "", v.seenBuckets, v.buckets, 100 * v.admittedShare, v.admittedBuckets,
                                     100 * v.oovShare, v.values), final: true)
            }
            Progress.line(TrainOutput.stopLine(report, patience: patience, maxEpochs: epochs), final: true)
            var described = model
            let last = report.epochs.first { $0.epoch == report.bestEpoch }
            var metrics: [String: JSONValue] = [:]
            // Undefined figures are null with a warning, not 0 or 0.5, which read as measured results:
            // no validation rows, or a task without a positive (or a negative) in the split.
            if report.validationRows == 0 {
                Progress.line("train: warning: no validation rows; validation AUC and log-loss are null in model.json", final: true)
            } else if let last = report.epochs.first(where: { $0.epoch == report.bestEpoch }) {
                for name in model.taskNames where last.validationAUC[name] == nil {
                    Progress.line("train: warning: the validation split has no positive (or no negative) \(name) label; its AUC is null in model.json", final: true)
                }
            }
            for name in model.taskNames {
                func figure(_ v: Double?) -> JSONValue { report.validationRows > 0 ? v.map(JSONValue.number) ?? .null : .null }
                metrics[name] = .object(["auc": figure(last?.validationAUC[name]), "logloss": figure(last?.validationLogLoss[name])])
            }
            var positiveWeights: [String: JSONValue] = [:]
            for (task, w) in config.positiveWeights { positiveWeights[task] = .number(Double(w)) }
            let lossText = weightColumn == nil
                ? "per batch: mean over rows of the per-task weighted BCE summed over tasks (pos_weight on positives)"
                : "per batch: sum over rows of weight * (per-task weighted BCE summed over tasks, pos_weight on positives) / sum of the batch's weights"
            let weightsObject: [String: JSONValue] = [
                "column": weightColumn.map(JSONValue.string) ?? .null, "loss": .string(lossText),
                "validation": .string(weightedValidation ? "weighted" : "unweighted"),
            ]
            let weights = JSONValue.object(weightsObject)
            let schedule: [String: JSONValue] = [
                "max_epochs": .number(Double(epochs)), "patience": .number(Double(patience)),
                "id_warmup": warmup.map { JSONValue.number(Double($0)) } ?? JSONValue.string("auto"),
                "id_warmup_ended": report.warmStartEnded.map { JSONValue.string($0.rawValue) } ?? JSONValue.null,
                "first_id_epoch": report.firstIDEpoch.map { JSONValue.number(Double($0)) } ?? JSONValue.null,
                // Through its shortest decimal text: 0.1, not Float 0.1's 0.10000000149011612.
                "id_phase_lr_scale": .number(Double(idPhaseLrScale.description) ?? Double(idPhaseLrScale)),
                "rule": .string(TrainOutput.scheduleRule),
            ]
            described.spec.training = .object([
                "data": .string(data), "rows": .number(Double(report.trainRows)), "validation_rows": .number(Double(report.validationRows)),
                "skipped_rows": .number(Double(report.skippedRows)), "seed": .number(Double(seed)), "arch": .string(arch),
                "clamp": .bool(clamp), "epochs_run": .number(Double(report.epochs.count)), "best_epoch": .number(Double(report.bestEpoch)),
                "stopped": .string(report.stopped.rawValue),
                "schedule": .object(schedule),
                "validation": .object(metrics),
                "pos_weight": .object(positiveWeights), "weights": weights,
                "admission": .object([
                    "rule": .string("bucket admitted iff >= min_count training values hash into it (validation split excluded, multi cells count each value); non-admitted buckets' rows of emb.<field> all hold the field's shared out-of-vocabulary vector"),
                    "min_count": .number(Double(minCount)),
                    "fields": .object(Dictionary(uniqueKeysWithValues: report.vocabulary.map { v in
                        (v.name, JSONValue.object(["id": .bool(v.isID), "seen_buckets": .number(Double(v.seenBuckets)),
                                                   "admitted_buckets": .number(Double(v.admittedBuckets)),
                                                   "values": .number(Double(v.values)), "oov_values": .number(Double(v.oovValues))]))
                    })),
                ]),
                "ids": .object([
                    "fields": .array(report.vocabulary.filter(\.isID).map { .string($0.name) }),
                    "dropout": .number(Double(idDropout)),
                    "warmup_epochs": .number(Double(report.warmStartEpochs)),  // as run
                    "lr_scale": .number(Double(idLrScale)), "dim": idDim.map { .number(Double($0)) } ?? .null,
                ]),
            ])
            let saved = try ModelStore.save(described, directory: out)
            let skippedNote = report.skippedRows > 0 ? ", \(report.skippedRows) bad rows skipped" : ""
            Progress.line(String(format: "train: wrote %@ (best epoch %d, %.0f s%@, fingerprint %@)", out, report.bestEpoch,
                                 Date().timeIntervalSince(started), skippedNote, String(saved.fingerprint.prefix(12))), final: true)
        } catch let e as FormatError {
            throw CLIError(e.description)
        }
    }
}
