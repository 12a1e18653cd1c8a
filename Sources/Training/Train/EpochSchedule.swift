/// How many epochs `prerank train` runs, and when the id fields start: the decisions taken on
/// validation after each epoch, apart from the training itself so they can be tested alone.
///
/// Why two phases (issue 25): the id tables memorise within an epoch or two, while the attribute
/// fields need many more (the id-free model kept improving until epoch 9 of 10 on a hidden
/// world). A fixed warm start of 3 epochs and a cap of 4 stopped the attribute side half trained;
/// a higher cap alone let the ids overfit from epoch 4 on and early stopping kept that epoch. So:
///
/// 1. **Warm start**: every id field reads the OOV row (the model is the id-free one) until
///    validation stops improving for `patience` epochs (`.untilPlateau`, the default), or for a
///    fixed number of epochs (`--id-warmup-epochs N`); at most `maxEpochs − 1`, so ids always get
///    at least the last epoch.
/// 2. **Ids**: training continues from the *best* warm-start epoch (not the last), every id row
///    starting as the OOV vector, until validation has not improved for `patience` epochs (the
///    trainer also scales every learning rate by `TrainingConfig.idPhaseLearningRateScale`).
///
/// Best means the highest validation score over both phases, so the ids are kept only if they
/// beat the converged id-free model on validation; otherwise the warm-start epoch is exported
/// (every id row the OOV vector). A run ends by `patience` in the last phase or by `maxEpochs`.
struct EpochSchedule: Sendable {
    enum WarmStart: Sendable, Equatable {
        /// No warm start (no id fields, `--id-warmup-epochs 0`, or `--epochs 1`).
        case none
        /// This many epochs (capped at `maxEpochs − 1`).
        case epochs(Int)
        /// Until validation stops improving for `patience` epochs (capped at `maxEpochs − 1`).
        /// Without validation rows, `TrainingConfig.defaultIDWarmupEpochs` epochs.
        case untilPlateau
    }

    enum Phase: Sendable, Equatable { case warmStart, ids }

    let maxEpochs: Int
    let patience: Int
    let warmStart: WarmStart
    private(set) var phase: Phase
    /// Best validation score so far and its epoch (nil before the first epoch).
    private(set) var best: (epoch: Int, score: Double)?
    /// Epochs in a row since the best.
    private(set) var sinceBest = 0
    /// Why warm start ended (nil while it runs, or when there was none).
    private(set) var warmStartEnd: WarmStartEnd?
    /// The first epoch that read the id fields (nil: none did).
    private(set) var firstIDEpoch: Int?

    init(maxEpochs: Int, patience: Int, warmStart: WarmStart) {
        self.maxEpochs = max(1, maxEpochs)
        self.patience = max(0, patience)
        let runs: Bool
        switch warmStart {
        case .none: runs = false
        case .epochs(let n): runs = n > 0 && maxEpochs > 1
        case .untilPlateau: runs = maxEpochs > 1
        }
        self.warmStart = runs ? warmStart : .none
        phase = runs ? .warmStart : .ids
        firstIDEpoch = runs ? nil : 1
    }

    /// Records epoch `epoch`'s validation score (higher is better; nil without validation rows:
    /// every epoch then counts as the best, and only `maxEpochs` ends the run) and says what next.
    mutating func record(epoch: Int, score: Double?) -> EpochAction {
        let improved: Bool
        if let score {
            improved = best.map { score > $0.score } ?? true
        } else {
            improved = true
        }
        if improved {
            best = (epoch, score ?? 0)
            sinceBest = 0
        } else {
            sinceBest += 1
        }
        let plateau = score != nil && !improved && sinceBest >= patience
        if epoch >= maxEpochs { return .stop(.maxEpochs) }
        switch phase {
        case .ids:
            return plateau ? .stop(.patience) : .next
        case .warmStart:
            var end: WarmStartEnd? = nil
            switch warmStart {
            case .none: end = .epochs
            case .epochs(let n): if epoch >= n { end = .epochs }
            case .untilPlateau:
                if plateau { end = .patience } else if score == nil && epoch >= TrainingConfig.defaultIDWarmupEpochs { end = .epochs }
            }
            if end == nil && epoch >= maxEpochs - 1 { end = .maxEpochs }
            guard let end else { return .next }
            phase = .ids
            warmStartEnd = end
            firstIDEpoch = epoch + 1
            sinceBest = 0
            return .startIDs(restoring: best?.epoch ?? epoch)
        }
    }
}

/// What the trainer does after an epoch.
public enum EpochAction: Sendable, Equatable {
    case next
    /// Restore the model of `restoring` (the best epoch so far), start every id row from the
    /// OOV vector, and read ids from the next epoch on.
    case startIDs(restoring: Int)
    case stop(StopReason)
}

/// An epoch's outcome as `prerank train` reports it.
public struct EpochDecision: Sendable {
    public var action: EpochAction
    /// The best epoch so far (this one when it improved).
    public var bestEpoch: Int
    /// Epochs in a row without improvement, of `patience`.
    public var sinceBest: Int
    public var patience: Int
}

/// Why training ended (model.json `training.stopped`).
public enum StopReason: String, Sendable {
    /// Validation had not improved for `--patience` epochs (in the id phase, when there is one).
    case patience
    /// `--epochs` ran out first.
    case maxEpochs = "max_epochs"
}

/// Why the id warm start ended (model.json `training.ids.warmup_ended`).
public enum WarmStartEnd: String, Sendable {
    /// Validation had not improved for `--patience` epochs.
    case patience
    /// The fixed `--id-warmup-epochs N` (or, without validation rows, the default 3) ran.
    case epochs
    /// `--epochs − 1` was reached: the ids get the last epoch.
    case maxEpochs = "max_epochs"
}
