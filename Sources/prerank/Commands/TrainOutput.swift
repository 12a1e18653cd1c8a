import Foundation
import Training

/// The lines `prerank train` prints per epoch and at the end: which epoch is best, how close the
/// run is to stopping, when ids start, and why the run ended (issue 25: a run at the defaults
/// must be seen to end because validation stopped improving, not because the cap ran out).
enum TrainOutput {
    /// model.json `training.schedule.rule`.
    static let scheduleRule = "warm start (id fields read the OOV row) until validation mean AUC has not improved for patience epochs (or id_warmup epochs), then ids from the best warm-start epoch until it has not improved for patience epochs again; best epoch over both kept; max_epochs is a cap"

    static func epochLines(_ e: EpochReport, _ d: EpochDecision, taskNames: [String], maxEpochs: Int) -> [String] {
        let aucs = taskNames.map { "\($0) \(e.validationAUC[$0].map { String(format: "%.4f", $0) } ?? "undefined")" }
            .joined(separator: ", ")
        let standing = d.bestEpoch == e.epoch ? "best so far" : "no improvement \(d.sinceBest) of \(d.patience), best epoch \(d.bestEpoch)"
        var lines = [String(format: "train: epoch %d%@: loss %.4f, %.0f rows/s, validation AUC %@ (mean %.4f, %@)",
                            e.epoch, e.readIDs ? "" : " (warm start, ids off)", e.trainLoss, e.samplesPerSecond, aucs, e.score, standing)]
        if case .startIDs(let restoring) = d.action {
            let why = d.sinceBest >= d.patience && d.bestEpoch != e.epoch
                ? "validation did not improve for \(d.sinceBest) epoch\(d.sinceBest == 1 ? "" : "s")"
                : e.epoch >= maxEpochs - 1 ? "--epochs \(maxEpochs) leaves the ids one epoch" : "--id-warmup-epochs reached"
            lines.append("train: warm start ends after epoch \(e.epoch) (\(why)); ids are read from epoch \(e.epoch + 1), starting from epoch \(restoring)'s model")
        }
        return lines
    }

    static func stopLine(_ report: TrainingReport, patience: Int, maxEpochs: Int) -> String {
        let last = report.epochs.count
        let kept = report.firstIDEpoch.map { report.bestEpoch < $0 } ?? (report.warmStartEpochs > 0)
            ? "kept epoch \(report.bestEpoch) (warm start: every id row exported as the OOV vector)"
            : "kept epoch \(report.bestEpoch)"
        switch report.stopped {
        case .patience:
            return "train: stopped after epoch \(last): validation did not improve for \(patience) epoch\(patience == 1 ? "" : "s") (patience); \(kept)"
        case .maxEpochs:
            let still = report.bestEpoch == last ? "; validation was still improving: more epochs may help" : ""
            return "train: stopped after epoch \(last): --epochs \(maxEpochs) reached (max_epochs); \(kept)\(still)"
        }
    }
}
