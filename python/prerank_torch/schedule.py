"""How many epochs a run takes and when the id fields start: `prerank train`'s schedule
(Sources/Training/Train/EpochSchedule.swift, issue 25), decision for decision.

1. Warm start: every id field reads the OOV row until validation has not improved for `patience`
   epochs ("auto", the default) or for N epochs (`--id-warmup-epochs N`); at most
   `max_epochs - 1`, so the ids always get the last epoch. Without validation rows, "auto" means
   DEFAULT_ID_WARMUP_EPOCHS epochs.
2. Ids: training continues from the best warm-start epoch's weights, every id row starting as the
   OOV vector and every learning rate scaled by `--id-phase-lr-scale`, until validation has not
   improved for `patience` epochs again.

The best epoch over both phases is kept. The decisions depend only on the validation score,
which every rank computes from the all-gathered validation rows, so under torchrun every rank
takes the same decision at the same epoch.
"""

DEFAULT_EPOCHS = 40
DEFAULT_ID_WARMUP_EPOCHS = 3
DEFAULT_ID_PHASE_LR_SCALE = 0.1

# model.json `training.schedule.rule` (the text prerank train writes, TrainOutput.swift).
SCHEDULE_RULE = ("warm start (id fields read the OOV row) until validation mean AUC has not improved for patience "
                 "epochs (or id_warmup epochs), then ids from the best warm-start epoch until it has not improved for "
                 "patience epochs again; best epoch over both kept; max_epochs is a cap")

WARM_START = "warm_start"
IDS = "ids"


class EpochSchedule:
    """`warm_start`: None (no warm start), an int N (N epochs) or "auto" (until plateau).

    `record(epoch, score)` returns ("next",), ("start_ids", restoring_epoch) or ("stop", reason)
    with reason "patience" or "max_epochs"; `warm_start_end` is "patience", "epochs" or
    "max_epochs" once warm start ended (model.json `training.schedule.id_warmup_ended`)."""

    def __init__(self, max_epochs, patience, warm_start):
        self.max_epochs = max(1, max_epochs)
        self.patience = max(0, patience)
        if warm_start == "auto":
            runs = max_epochs > 1
        elif warm_start is None:
            runs = False
        else:
            runs = warm_start > 0 and max_epochs > 1
        self.warm_start = warm_start if runs else None
        self.phase = WARM_START if runs else IDS
        self.best = None  # (epoch, score)
        self.since_best = 0
        self.warm_start_end = None
        self.first_id_epoch = None if runs else 1

    def record(self, epoch, score):
        """Epoch `epoch`'s validation score (higher is better; None without validation rows: every
        epoch then counts as the best and only max_epochs ends the run), and what to do next."""
        improved = score is None or self.best is None or score > self.best[1]
        if improved:
            self.best = (epoch, score if score is not None else 0.0)
            self.since_best = 0
        else:
            self.since_best += 1
        plateau = score is not None and not improved and self.since_best >= self.patience
        if epoch >= self.max_epochs:
            return ("stop", "max_epochs")
        if self.phase == IDS:
            return ("stop", "patience") if plateau else ("next",)
        end = None
        if self.warm_start == "auto":
            if plateau:
                end = "patience"
            elif score is None and epoch >= DEFAULT_ID_WARMUP_EPOCHS:
                end = "epochs"
        elif epoch >= self.warm_start:
            end = "epochs"
        if end is None and epoch >= self.max_epochs - 1:
            end = "max_epochs"
        if end is None:
            return ("next",)
        self.phase = IDS
        self.warm_start_end = end
        self.first_id_epoch = epoch + 1
        self.since_best = 0
        return ("start_ids", self.best[0] if self.best else epoch)

    def warm_start_epochs(self, epochs_run):
        """Epochs of warm start as run (model.json `training.ids.warmup_epochs`)."""
        if self.warm_start is None:
            return 0
        return self.first_id_epoch - 1 if self.first_id_epoch is not None else epochs_run

    def state_dict(self):
        return {"phase": self.phase, "best": self.best, "since_best": self.since_best,
                "warm_start_end": self.warm_start_end, "first_id_epoch": self.first_id_epoch}

    def load_state_dict(self, s):
        self.phase, self.since_best = s["phase"], s["since_best"]
        self.best = tuple(s["best"]) if s["best"] is not None else None
        self.warm_start_end, self.first_id_epoch = s["warm_start_end"], s["first_id_epoch"]


def epoch_lines(epoch, read_ids, loss, rate, aucs, score, action, best_epoch, since_best, patience, max_epochs):
    """The lines prerank train prints after an epoch (TrainOutput.epochLines); `aucs`: task name →
    AUC or None (undefined on the split)."""
    shown = ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} undefined" for k, v in aucs.items())
    standing = "best so far" if best_epoch == epoch else \
        f"no improvement {since_best} of {patience}, best epoch {best_epoch}"
    lines = [f"train: epoch {epoch}{'' if read_ids else ' (warm start, ids off)'}: loss {loss:.4f}, {rate:.0f} rows/s, "
             f"validation AUC {shown} (mean {score:.4f}, {standing})"]
    if action[0] == "start_ids":
        if since_best >= patience and best_epoch != epoch:
            why = f"validation did not improve for {since_best} epoch{'' if since_best == 1 else 's'}"
        elif epoch >= max_epochs - 1:
            why = f"--epochs {max_epochs} leaves the ids one epoch"
        else:
            why = "--id-warmup-epochs reached"
        lines.append(f"train: warm start ends after epoch {epoch} ({why}); ids are read from epoch {epoch + 1}, "
                     f"starting from epoch {action[1]}'s model")
    return lines


def stop_line(epochs_run, best_epoch, stopped, first_id_epoch, warm_start_epochs, patience, max_epochs):
    """prerank train's last line about the schedule (TrainOutput.stopLine); `first_id_epoch` as
    reported (None when no id epoch ran)."""
    warm_kept = best_epoch < first_id_epoch if first_id_epoch is not None else warm_start_epochs > 0
    kept = f"kept epoch {best_epoch} (warm start: every id row exported as the OOV vector)" if warm_kept \
        else f"kept epoch {best_epoch}"
    if stopped == "patience":
        return (f"train: stopped after epoch {epochs_run}: validation did not improve for {patience} "
                f"epoch{'' if patience == 1 else 's'} (patience); {kept}")
    still = "; validation was still improving: more epochs may help" if best_epoch == epochs_run else ""
    return f"train: stopped after epoch {epochs_run}: --epochs {max_epochs} reached (max_epochs); {kept}{still}"
