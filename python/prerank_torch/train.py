"""`python3 -m prerank_torch train`: one process, or data-parallel under torchrun.

Distribution (torch.distributed; env:// as torchrun sets it):
  * the towers and heads are wrapped in DistributedDataParallel (bucketed all-reduce of dense
    gradients, overlapped with the backward pass);
  * the embedding tables are `nn.EmbeddingBag(sparse=True)`: a step's gradient holds only the
    rows the batch touched. Their gradients are synchronised by distributed.sync_sparse — coalesced, then
    the touched row ids and rows of every rank are all-gathered and summed — because NCCL has no
    sparse all-reduce and this way one code path serves gloo (CPU) and NCCL (GPU). The tables are
    replicated on every rank (fine up to a few GB of tables; TorchRec sharding is the next step);
  * `--batch` is the global batch. `--shuffle full` (the default up to 5M training rows per
    process): every process computes prerank train's permutation of all training rows and takes
    its own rows of each global batch, so any process count takes prerank train's steps (same seed:
    same init, order and id-dropout masks; swiftrng.py). `--shuffle buffer` (streaming):
    the rows are cut into `--data-shards` logical shards (default:
    the number of processes); a step takes `ceil(batch / shards)` rows from every shard and
    averages the shards' mean losses. With the same `--data-shards`, N processes take exactly the
    optimiser steps one process takes (tested: same AUC, weights equal to float rounding).
  * printed losses and rows are over every rank (`Progress`), one step is `step.TrainStep`, and at
    the end `distributed.check_replicas` proves every rank holds the same weights.
Optimisers: Adam for towers and heads in prerank train's ε form (PrerankAdam); SparseAdam (lazy Adam: moments of untouched rows are left
alone) for the tables, with `--embedding-l2` added to the touched rows' gradients — the same
split as `prerank train` (Adam + lazy Adam with L2 on touched rows).
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import CHECKPOINT_FORMAT, check_resumable, load_checkpoint, run_record, save_checkpoint
from .data import Encoder, ShardedStream, concat, drop_to_oov, iterate_blocks, list_sources, take, to_batch
from .distributed import DEFAULT_COLLECTIVE_TIMEOUT_S, Dist, check_replicas, log, resolve_device, sync_sparse  # noqa: F401
from .errors import InputError
from .metrics import auc, logloss
from .model import PrerankAdam, TwinTower
from .schedule import SCHEDULE_RULE, WARM_START, EpochSchedule, epoch_lines, stop_line
from .spec import architecture, load_features, resolve_id_fields
from .step import TrainStep, add_l2_to_touched_rows, batch_loss, to_device  # noqa: F401

# --shuffle auto: prerank train's order (every training row in memory) up to this many training
# rows per process (~200 bytes each), the streaming shuffle buffer beyond.
FULL_SHUFFLE_MAX_ROWS = 5_000_000


def parse_pos_weight(text, tasks):
    w = {}
    for part in (text or "").split(","):
        if not part:
            continue
        kv = part.split("=")
        try:
            value = float(kv[1]) if len(kv) == 2 else -1
        except ValueError:
            value = -1
        if len(kv) != 2 or not value > 0:
            raise InputError(f"--pos-weight takes task=weight pairs, got {part}")
        if kv[0] not in [t["name"] for t in tasks]:
            raise InputError(f"--pos-weight names task {kv[0]}, which features.yaml does not have")
        w[kv[0]] = value
    return [w.get(t["name"], 1.0) for t in tasks]


def scan(sources, tasks, features, d, fraction, skip_bad_rows, weight_column=None, keep_train=0):
    """The first pass over this rank's rows: validates them, dense sums, positives, row counts,
    per embedded field the values per bucket in the training rows (feature admission), and keeps
    the (encoded) validation rows. keep_train: also keep this rank's training rows (--shuffle
    full) up to that many (None: all; 0: none); past the limit none are kept (None)."""
    enc = Encoder(tasks, features, weight_column)
    values = {f["name"]: np.zeros(f["buckets"], dtype=np.int64)  # record order: user side, then item side
              for side in ("user", "item") for f in features if f["side"] == side and f["kind"] != "dense"}
    T = len(tasks)
    sums = {s: np.zeros((3, len(enc.sides[s]["dense"]))) for s in enc.sides}  # sum, squares, count
    positives = np.zeros(T)
    counts = np.zeros(2)  # train, validation
    skipped = [0]
    validation, train = [], []
    for block, val in iterate_blocks(sources, enc, d.rank, d.world, fraction, "all", skip_bad_rows, skipped):
        for side in ("user", "item"):
            a = block[f"dense.{side}"].astype(np.float64)
            ok = ~np.isnan(a)
            sums[side][0] += np.where(ok, a, 0).sum(0)
            sums[side][1] += np.where(ok, a * a, 0).sum(0)
            sums[side][2] += ok.sum(0)
        nv = int(val.sum())
        counts += (block["n"] - nv, nv)
        if nv:
            validation.append(take(block, np.flatnonzero(val)))
        if train is not None and keep_train != 0 and nv < block["n"]:
            train.append(take(block, np.flatnonzero(~val)))
            if keep_train is not None and counts[0] > keep_train:
                train = None  # too many to hold: the streaming shuffle
        for side in ("user", "item"):
            for (name, _, _), (flat, offsets) in zip(enc.sides[side]["emb"], block[f"bags.{side}"]):
                train_values = flat[np.repeat(~val, np.diff(offsets))]
                if len(train_values):
                    u, c = np.unique(train_values, return_counts=True)
                    values[name][u] += c
        bits = block["bits"][~val]
        for k in range(T):
            positives[k] += int(((bits >> k) & 1).sum())
    validation = concat(validation) if validation else None
    train = concat(train) if train else (None if train is None or keep_train == 0 else [])
    return enc, sums, positives, counts, skipped[0], validation, values, train


class PrerankOrder:
    """`prerank train`'s row order, id dropout and batches, for the training rows this rank holds
    (`--shuffle full`).

    Training rows are numbered 0..N-1 in data order (validation rows left out), as prerank train
    numbers them. Epoch e permutes the previous epoch's order with its Fisher-Yates shuffle
    (SplitMix64(seed + e)); step b takes positions [b·B, (b+1)·B) of the order (the last step
    the rest). Id dropout draws, per position and id field in record order, SplitMix64(seed,
    stream 0xD20F, index e).next() < cut. Every rank computes the same order and takes the rows it
    holds from each global batch, so any number of processes takes exactly these steps."""

    def __init__(self, block, all_indices, seed, batch, id_fields, dropout):
        self.block, self.seed, self.batch = block, seed, batch
        self.id_fields, self.dropout = id_fields, dropout
        numbers = np.sort(np.concatenate(all_indices)) if all_indices else np.zeros(0, dtype=np.int64)
        self.n = len(numbers)
        self.local = np.full(self.n, -1, dtype=np.int64)
        if block is not None:
            self.local[np.searchsorted(numbers, block["index"])] = np.arange(block["n"])
        self.order, self.epoch = list(range(self.n)), 0

    def steps(self):
        return -(-self.n // self.batch)

    def batches(self, epoch, warming, start_step=0):
        """Yields (block of this rank's rows, rows in the global batch) for every step from start_step."""
        from .swiftrng import SplitMix64, dropout_cut
        if epoch < self.epoch:
            self.order, self.epoch = list(range(self.n)), 0
        while self.epoch < epoch:
            self.epoch += 1
            SplitMix64(self.seed + self.epoch).shuffle(self.order)
        order = np.asarray(self.order, dtype=np.int64)
        drops = None
        if self.id_fields and not warming and self.dropout > 0:
            rng = SplitMix64(self.seed, stream=0xD20F, index=epoch)
            drops = rng.below(self.n * len(self.id_fields), dropout_cut(self.dropout)).reshape(self.n, len(self.id_fields))
        for b in range(start_step, self.steps()):
            pos = np.arange(b * self.batch, min((b + 1) * self.batch, self.n))
            loc = self.local[order[pos]]
            mine = loc >= 0
            block = take(self.block, loc[mine]) if self.block is not None else None
            if block is not None and drops is not None:
                drop_to_oov(block, self.id_fields, drops[pos[mine]])
            yield block, len(pos)


def parse_id_warmup(text):
    """--id-warmup-epochs: "auto" (until validation stops improving) or an integer N ≥ 0."""
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"--id-warmup-epochs must be auto or an integer ≥ 0, not {text}")
    return n


def dense_stats(sums):
    """mean and population std per dense field over every row (std 1 when constant or n ≤ 1)."""
    mean, std = {}, {}
    for side, s in sums.items():
        total, squares, n = s
        m = np.where(n > 0, total / np.maximum(n, 1), 0.0)
        var = np.maximum(squares / np.maximum(n, 1) - m * m, 0.0)
        sd = np.sqrt(var)
        mean[side] = m.astype(np.float32)
        std[side] = np.where((n > 1) & (sd > 1e-6), sd, 1.0).astype(np.float32)
    return mean, std


def evaluate(model, block, tasks, enc, d, arch):
    """Validation AUC and log-loss per task over every rank's validation rows."""
    probs, labels = [], []
    model.eval()
    n = block["n"] if block is not None else 0
    with torch.no_grad():
        for i in range(0, n, 4096):
            b = to_device(to_batch(take(block, np.arange(i, min(i + 4096, n))), len(tasks)), d.device)
            probs.append(model.probabilities(b).double().cpu().numpy())
            labels.append(b["labels"].cpu().numpy())
    model.train()
    T = len(tasks)
    p = np.concatenate(probs) if probs else np.zeros((0, T))
    y = np.concatenate(labels) if labels else np.zeros((0, T))
    parts = d.gather((p, y))
    p = np.concatenate([a for a, _ in parts])
    y = np.concatenate([b for _, b in parts])
    out = {}
    for k, t in enumerate(tasks):
        out[t["name"]] = {"auc": auc(p[:, k], y[:, k]), "logloss": logloss(p[:, k], y[:, k])}
    return out, len(p)


def configure_threads(requested):
    """torch's intra-op threads: --threads, else 1; inter-op threads: 1. A step of these models is
    many small operators, where more threads do not pay even on an idle machine (issue 24: level),
    while OpenMP threads that spin-wait for a core another process holds collapse a step on a busy
    one (issue 24: 389–1,900 rows/s at torch's default against 14–32k with one thread). Scale
    out with processes (torchrun, one per core or GPU), or raise --threads for wide models."""
    n = requested or 1
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process (it can be set once, before the first parallel work)
    return n


def run(args):
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be ≥ 1, not {args.threads}")
    if not args.collective_timeout > 0:
        raise InputError(f"--collective-timeout must be > 0 seconds, not {args.collective_timeout}")
    configure_threads(args.threads)
    d = Dist(args.device, args.collective_timeout)
    try:
        return _run(args, d)
    finally:
        d.close()


def _run(args, d):
    started = time.time()
    try:
        hidden = [int(x) for x in args.hidden.split(",") if x.strip()] if args.hidden else []
    except ValueError:
        raise InputError(f"--hidden must be positive integers, not {args.hidden}")
    if any(h < 1 for h in hidden) or args.d < 1 or args.epochs < 1 or args.batch < 1 or not args.lr > 0:
        raise InputError("--hidden, --d, --epochs, --batch must be ≥ 1 and --lr > 0")
    if not 0 <= args.validation_fraction < 1:
        raise InputError("--validation-fraction must be in [0, 1)")
    emb_lr = args.embedding_lr if args.embedding_lr is not None else args.lr
    if not emb_lr > 0 or args.embedding_l2 < 0:
        raise InputError("--embedding-lr must be > 0 and --embedding-l2 ≥ 0")
    # Id measures (prerank train's defaults); off by default when fine-tuning a model
    # (--init-model): a warm start would reset its trained id rows.
    fresh = not args.init_model
    min_count = args.min_count if args.min_count is not None else (5 if fresh else 0)
    id_dropout = args.id_dropout if args.id_dropout is not None else (0.5 if fresh else 0.0)
    id_warmup = parse_id_warmup(args.id_warmup_epochs if args.id_warmup_epochs is not None else ("auto" if fresh else "0"))
    if args.patience < 0:
        raise InputError(f"--patience must be ≥ 0, not {args.patience}")
    if min_count < 0:
        raise InputError(f"--min-count must be ≥ 0, not {min_count}")
    if not 0 <= id_dropout <= 1:
        raise InputError(f"--id-dropout must be in [0, 1], not {id_dropout}")
    if not (args.id_lr_scale > 0 and math.isfinite(args.id_lr_scale)) or (args.id_dim is not None and args.id_dim < 1):
        raise InputError("--id-lr-scale must be > 0, --id-dim ≥ 1")
    if not (args.id_phase_lr_scale > 0 and math.isfinite(args.id_phase_lr_scale)):
        raise InputError(f"--id-phase-lr-scale must be > 0, not {args.id_phase_lr_scale}")
    if args.id_dim is not None and args.init_model:
        raise InputError("--id-dim cannot change the features of --init-model")
    explicit_ids = [x.strip() for x in args.id_fields.split(",") if x.strip()] if args.id_fields is not None else None

    init = None
    if args.init_model:
        init = TwinTower.load(args.init_model)
        tasks, features, arch = init.tasks, init.features, dict(init.arch)
        if args.features:
            ft, ff = load_features(args.features)
            if ft != tasks or ff != features:
                raise InputError(f"{args.features}: tasks and features differ from {args.init_model}/model.json")
        if args.arch and architecture(args.arch, arch["hidden"], arch["d"], arch["clamp"]) != arch:
            raise InputError(f"--arch {args.arch} differs from {args.init_model}'s architecture")
        if args.clamp:
            arch["clamp"] = True
    else:
        if not args.features:
            raise InputError("--features is required (or --init-model MODELDIR)")
        arch = architecture(args.arch or "resflow", hidden, args.d, args.clamp)
        tasks, features = load_features(args.features)
    id_names = resolve_id_fields(features, explicit_ids)
    if args.id_dim is not None:
        features = [dict(f, dim=args.id_dim) if f["name"] in id_names else f for f in features]
    arch_name = args.arch or ("imported" if init else "resflow")
    pos_weight = parse_pos_weight(args.pos_weight, tasks)
    sources = list_sources(args.data)
    if not args.out:
        raise InputError("--out is required")
    shards = args.data_shards or d.world
    if shards % d.world:
        raise InputError(f"--data-shards must be a multiple of the number of processes ({d.world}), is {shards}")

    # Resume: the checkpoint is read (and a run of other settings refused) before the data pass.
    checkpoint = args.checkpoint or os.path.join(args.out, "checkpoint.pt")
    path, state = None, None
    if args.resume is not None:
        path = args.resume or checkpoint
    elif args.auto_resume:
        # Every rank decides alike (the checkpoint must be on a path every rank reads).
        path = checkpoint if os.path.exists(checkpoint) else None
        if path is None:
            log(f"train: no checkpoint at {checkpoint}: starting afresh (--auto-resume)", d.rank)
    # The id and schedule settings a resumed run must share with the checkpoint's.
    ids_record = {"fields": sorted(id_names), "dropout": id_dropout, "warmup": id_warmup, "lr_scale": args.id_lr_scale,
                  "dim": args.id_dim, "phase_lr_scale": args.id_phase_lr_scale, "patience": args.patience}
    if path is not None:
        state = load_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: checkpoint format {state.get('format')}, this trainer reads {CHECKPOINT_FORMAT}; "
                             f"start afresh without --resume")
        theirs = state.get("ids") or {}
        for key in ids_record:
            if theirs.get(key) != ids_record[key]:
                raise InputError(f"{path}: checkpoint is not of this model (id or schedule setting {key} was "
                                 f"{theirs.get(key)}, this run has {ids_record[key]}); resume with the same value "
                                 f"or start afresh without --resume")
        check_resumable(path, state, run_record(args, d.world, sources, None, shards, emb_lr, pos_weight),
                        ignore=("order", "data_shards", "workers"))  # known after the data pass

    # Pass 1: validate every row, dense statistics, base rates, validation rows (kept encoded).
    t0 = time.time()
    if args.shuffle not in ("auto", "full", "buffer"):
        raise InputError(f"--shuffle must be auto, full or buffer, not {args.shuffle}")
    keep = {"auto": FULL_SHUFFLE_MAX_ROWS, "full": None, "buffer": 0}[args.shuffle]
    enc, sums, positives, counts, skipped, validation, values, train_block = scan(
        sources, tasks, features, d, args.validation_fraction, args.skip_bad_rows, args.weight_column, keep)
    # Values per bucket: each rank counted its own rows; summed over ranks (one all-reduce).
    names = list(values)
    if names:
        sizes = [len(values[n]) for n in names]
        total = d.all_sum_int(torch.from_numpy(np.concatenate([values[n] for n in names])))
        values = dict(zip(names, torch.split(total, sizes)))
    for side in sums:
        sums[side] = d.all_sum(sums[side])
    positives = d.all_sum(positives)
    counts = d.all_sum(counts)
    skipped = int(d.all_sum([skipped])[0])
    train_rows, validation_rows = int(counts[0]), int(counts[1])
    if train_rows + validation_rows == 0:
        raise InputError(f"{args.data}: no training rows")
    log(f"train: read {train_rows + validation_rows} rows ({train_rows} training, {validation_rows} validation"
        f"{f', {skipped} bad rows skipped' if skipped else ''}) in {time.time() - t0:.1f} s, "
        f"{d.world} process(es), backend {d.backend or 'none'}, device {d.device}, "
        f"{torch.get_num_threads()} thread(s) each{', bf16 autocast' if args.amp == 'bf16' else ''}", d.rank)

    version = args.version or f"{arch_name}{'+clamp' if arch['clamp'] else ''}-seed{args.seed}"
    if init is not None:
        model = init.with_oov_rows(args.seed)
        model.version = version
    else:
        model = TwinTower(tasks, features, arch, version=version, oov=True)
        model.initialise_as_prerank_train(args.seed, positives=[int(p) for p in positives], rows=train_rows)
        mean, std = dense_stats(sums)
        with torch.no_grad():
            for side in ("user", "item"):
                getattr(model.encoder, f"mean_{side}").copy_(torch.from_numpy(mean[side]))
                getattr(model.encoder, f"std_{side}").copy_(torch.from_numpy(std[side]))
    model.arch = arch
    # Feature admission (docs/ARCHITECTURE.md): a bucket with fewer than min_count training values
    # reads and updates the field's OOV row, and is exported holding the OOV vector.
    enc_m = model.encoder
    vocabulary = {}
    for name, c in values.items():
        ti = enc_m.table_index[name]
        admitted = c >= min_count if min_count > 0 else None
        enc_m.admit(ti, admitted)
        seen = c > 0
        vocabulary[name] = {
            "id": name in id_names, "seen_buckets": int(seen.sum()),
            "admitted_buckets": int((seen & admitted).sum()) if admitted is not None else int(seen.sum()),
            "values": int(c.sum()), "oov_values": int(c[~admitted].sum()) if admitted is not None else 0}
    for name, v in vocabulary.items():
        log(f"train: {name}{' (id)' if v['id'] else ''}: vocabulary {v['seen_buckets']} of "
            f"{enc_m.buckets[enc_m.table_index[name]]} buckets, admitted "
            f"{100 * v['admitted_buckets'] / max(v['seen_buckets'], 1):.1f}% ({v['admitted_buckets']}), "
            f"OOV {100 * v['oov_values'] / max(v['values'], 1):.2f}% of {v['values']} values", d.rank)
    id_tables = sorted(enc_m.table_index[n] for n in id_names)
    # prerank train's schedule: warm start without ids, then ids, both ended by patience (schedule.py).
    schedule = EpochSchedule(args.epochs, args.patience, (id_warmup or None) if id_tables else None)
    id_stream = [(side, j, f_buckets) for side in ("user", "item")
                 for j, (name, _, h) in enumerate(enc.sides[side]["emb"]) if name in id_names
                 for f_buckets in [enc_m.buckets[enc_m.table_index[name]]]]
    full = d.all_min(1 if train_block is not None else 0) == 1
    porder = None
    if full:
        if isinstance(train_block, list):
            raise InputError(f"{args.data}: --shuffle full needs training rows on every process")
        porder = PrerankOrder(train_block, d.gather(train_block["index"]), args.seed, args.batch, id_stream, id_dropout)
    if full:
        log("train: order: prerank train's permutation of every training row (--shuffle full)", d.rank)
    else:
        log(f"train: order: streaming shuffle buffer of {args.shuffle_buffer} rows in {args.data_shards or d.world} "
            f"shard(s) (--shuffle buffer)", d.rank)
    model.to(d.device)
    towers = model.towers
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP
        towers = DDP(model.towers, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    opt_dense = PrerankAdam(model.towers.parameters(), lr=args.lr)  # Adam in prerank train's form
    groups = [{"params": [t.weight for i, t in enumerate(model.encoder.tables) if i not in id_tables], "lr": emb_lr},
              {"params": [t.weight for i, t in enumerate(model.encoder.tables) if i in id_tables],
               "lr": emb_lr * args.id_lr_scale}]
    groups = [g for g in groups if g["params"]]
    opt_sparse = torch.optim.SparseAdam(groups) if groups else None
    pw = torch.tensor(pos_weight, dtype=torch.float32, device=d.device)
    train_step = TrainStep(model, towers, opt_dense, opt_sparse, pw, d, bool(args.weight_column), args.embedding_l2,
                           amp=args.amp == "bf16")

    record = run_record(args, d.world, sources, porder is not None, shards, emb_lr, pos_weight)
    # best: the best epoch's figures and weights (its epoch and score are schedule.best).
    start_epoch, best, history, stop_reason = 1, None, [], None
    resume_step, resume_seen, resume_loss = 0, 0, 0.0
    if state is not None:
        if state.get("format") != CHECKPOINT_FORMAT or state.get("tasks") != tasks or state.get("features") != features \
                or state.get("arch") != arch:
            raise InputError(f"{path}: checkpoint is not of this model (tasks, features, architecture or checkpoint "
                             f"format differ)")
        check_resumable(path, state, record)
        model.load_state_dict(state["model"])
        opt_dense.load_state_dict(state["opt_dense"])
        if opt_sparse is not None:
            opt_sparse.load_state_dict(state["opt_sparse"])
        best, history = state["best"], state["history"]
        schedule.load_state_dict(state["schedule"])
        if state["step"] > 0:  # mid-epoch: replay the epoch's (deterministic) stream past the steps taken
            start_epoch, resume_step = state["epoch"], state["step"]
            resume_seen, resume_loss = state["seen"], state["loss_sum"]
        else:
            start_epoch = state["epoch"] + 1
        log(f"train: resumed from {path} at epoch {state['epoch']}, step {state['step']}", d.rank)
        # Stopped by patience: done. Stopped by the cap: a larger --epochs trains on.
        stop_reason = state.get("stopped")
        if stop_reason == "patience":
            start_epoch = args.epochs + 1

    def save(epoch, step, seen, loss_sum, stopped=None):
        """Rank 0 writes the checkpoint (the others hold the same weights: check_replicas)."""
        if d.rank != 0 or args.no_checkpoint:
            return
        save_checkpoint(checkpoint, {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step, "seen": seen, "loss_sum": loss_sum,
            "tasks": tasks, "features": features, "arch": arch, "ids": ids_record, "run": record,
            "model": model.state_dict(), "opt_dense": opt_dense.state_dict(),
            "opt_sparse": opt_sparse.state_dict() if opt_sparse is not None else None,
            "best": best, "schedule": schedule.state_dict(), "history": history, "stopped": stopped})

    local_batch = max(1, math.ceil(args.batch / shards))
    steps_total = 0
    for epoch in range(start_epoch, args.epochs + 1):
        warming = schedule.phase == WARM_START
        model.encoder.ids_off = set(id_tables) if warming else set()
        resuming = epoch == start_epoch and resume_step
        if porder is not None:
            loader = None
            it = full_batches(porder, epoch, warming, resume_step if resuming else 0, len(tasks), d.world,
                              pin=d.device.type == "cuda")
        else:
            ds = ShardedStream(sources, tasks, features, d.rank, d.world, shards, epoch, args.seed, local_batch,
                               args.shuffle_buffer, args.validation_fraction, args.skip_bad_rows,
                               id_fields=[] if warming else id_stream, id_p=id_dropout, weight_column=args.weight_column)
            loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers,
                                                 prefetch_factor=4 if args.workers > 0 else None,
                                                 pin_memory=d.device.type == "cuda")
            it = iter(loader)
            if resuming:
                for _ in range(resume_step):
                    next(it, None)
        e_start = time.time()
        progress = Progress(d, *((resume_seen, resume_loss) if resuming else (0, 0.0)))
        step = resume_step if resuming else 0
        interrupted = False
        while True:
            batch = next(it, None)
            # --shuffle full: every rank has a batch at every step of the epoch (its rows of the
            # global batch, maybe none). Streaming: ranks stop together when one runs out.
            if porder is not None:
                done = batch is None
            else:
                done = d.all_min(0 if batch is None else 1) == 0
            if done:
                break
            batch = to_device(batch, d.device)
            progress.add(train_step(batch), batch)
            step += 1
            steps_total += 1
            if args.log_every and step % args.log_every == 0:
                seen, loss_sum = progress.read()
                rate = (seen - progress.base_seen) / max(time.time() - e_start, 1e-9)  # rows of this run
                eta = max(train_rows - seen, 0) / rate if rate > 0 else 0
                log(f"train: epoch {epoch}  {seen}/{train_rows} rows  loss {loss_sum / max(seen, 1):.4f}  "
                    f"{rate:.0f} rows/s  ETA {eta:.0f}s", d.rank)
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                save(epoch, step, *progress.read())
            if args.stop_after_steps and steps_total >= args.stop_after_steps:
                save(epoch, step, *progress.read())
                interrupted = True
                break
            if args.crash_after_steps and path is None and steps_total >= args.crash_after_steps:
                save(epoch, step, *progress.read())
                if d.on:
                    dist.barrier()  # the checkpoint is on disk before any rank exits
                log(f"train: exiting with status 75 after {steps_total} steps (--crash-after-steps)", d.rank)
                raise SystemExit(75)
        if interrupted:
            log(f"train: stopped after {steps_total} steps (--stop-after-steps); continue with --resume", d.rank)
            return None
        del it, loader
        seen, loss_sum = progress.read()
        rate = (seen - progress.base_seen) / max(time.time() - e_start, 1e-9)  # rows of this run
        metrics, _ = evaluate(model, validation, tasks, enc, d, arch)  # reads ids as the export will
        # Mean over the tasks whose AUC is defined on the split (as prerank train).
        aucs = [m["auc"] for m in metrics.values() if m["auc"] is not None]
        score = sum(aucs) / len(aucs) if validation_rows and aucs else -loss_sum / max(seen, 1)
        history.append({"epoch": epoch, "loss": loss_sum / max(seen, 1), "rows_per_second": rate,
                        "validation": metrics, "read_ids": not warming})
        # The same decision on every rank: the score is of every rank's validation rows.
        action = schedule.record(epoch, score if validation_rows > 0 else None)
        if schedule.best[0] == epoch:
            best = {"epoch": epoch, "metrics": metrics,
                    "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        best_so_far = schedule.best[0]
        for line in epoch_lines(epoch, not warming, loss_sum / max(seen, 1), rate,
                                {k: m["auc"] for k, m in metrics.items()}, score, action, best_so_far,
                                epoch - best_so_far, args.patience, args.epochs):
            log(line, d.rank)
        if action[0] == "start_ids":
            # From the best warm-start epoch's weights (the optimisers' moments stay as they are,
            # as in prerank train), every id row the OOV vector, every learning rate scaled.
            if best is not None and best["epoch"] == action[1]:
                model.load_state_dict(best["model"])
            start_ids_from_oov(model.encoder, id_tables)
            for opt in (opt_dense, opt_sparse):
                for g in (opt.param_groups if opt is not None else []):
                    g["lr"] *= args.id_phase_lr_scale
        stop_reason = action[1] if action[0] == "stop" else None
        save(epoch, 0, seen, loss_sum, stop_reason)
        if stop_reason:
            break

    if best is not None:
        model.load_state_dict(best["model"])
    # Every rank applied the same averaged gradients, so every rank must hold the same bits.
    replicas = check_replicas(dict(model.state_dict()), d)
    if d.on:
        log(f"train: all {d.world} ranks hold identical weights ({replicas} tensors, fingerprints all-gathered)",
            d.rank)
    best_epoch = schedule.best[0] if schedule.best else len(history)
    first_id_epoch = schedule.first_id_epoch if schedule.first_id_epoch is not None and \
        schedule.first_id_epoch <= len(history) else None
    warm = schedule.warm_start_epochs(len(history))
    log(stop_line(len(history), best_epoch, stop_reason, first_id_epoch, warm, args.patience, args.epochs), d.rank)
    # The kept epoch is a warm-start one (the ids never beat it): every id row = OOV vector.
    ids_off = best_epoch < schedule.first_id_epoch if schedule.first_id_epoch is not None else True
    model.encoder.export_ids_off = set(id_tables) if ids_off else set()
    model.training_info = {
        "trainer": "prerank_torch", "torch": torch.__version__, "data": args.data, "rows": train_rows,
        "validation_rows": validation_rows, "skipped_rows": skipped, "seed": args.seed, "arch": arch_name,
        "clamp": arch["clamp"], "epochs_run": len(history), "best_epoch": best_epoch, "stopped": stop_reason,
        "schedule": {"max_epochs": args.epochs, "patience": args.patience, "id_warmup": id_warmup,
                     "id_warmup_ended": schedule.warm_start_end, "first_id_epoch": first_id_epoch,
                     "id_phase_lr_scale": args.id_phase_lr_scale, "rule": SCHEDULE_RULE},
        "world_size": d.world, "backend": d.backend or "none", "device": d.device.type, "amp": args.amp, "batch": args.batch, "lr": args.lr,
        "embedding_lr": emb_lr, "embedding_l2": args.embedding_l2,
        "init_model": args.init_model or None,
        # Undefined figures (no validation rows; a task without a positive or a negative) are null.
        "validation": {k: {"auc": m["auc"] if validation_rows else None, "logloss": m["logloss"] if validation_rows else None}
                       for k, m in (best["metrics"] if best else {}).items()},
        # The same records as prerank train writes (docs/ARCHITECTURE.md "Feature admission").
        "admission": {
            "rule": "bucket admitted iff >= min_count training values hash into it (validation split excluded, "
                    "multi cells count each value); non-admitted buckets' rows of emb.<field> all hold the field's "
                    "shared out-of-vocabulary vector",
            "min_count": min_count,
            "fields": vocabulary},
        "ids": {"fields": [n for n in vocabulary if vocabulary[n]["id"]], "dropout": id_dropout, "warmup_epochs": warm,
                "lr_scale": args.id_lr_scale, "dim": args.id_dim},
    }
    # The same record as prerank train (docs/TRAINING.md "Sample weights"); validation is unweighted here.
    model.training_info["weights"] = {
        "column": args.weight_column,
        "loss": ("per batch: sum over rows of weight * (per-task weighted BCE summed over tasks, pos_weight on positives)"
                 " / sum of the batch's weights") if args.weight_column else
                ("per batch: mean over rows of the per-task weighted BCE summed over tasks (pos_weight on positives)"),
        "validation": "unweighted",
    }
    if d.rank == 0:
        model.export(args.out)
        log(f"train: wrote {args.out} (best epoch {model.training_info['best_epoch']}, "
            f"{time.time() - started:.0f} s)", d.rank)
    return model


def full_batches(porder, epoch, warming, start_step, n_tasks, world, pin=False):
    """Training batches of --shuffle full: this rank's rows of each global batch; each row's loss
    weighs world / (rows in the global batch), so DDP's mean over ranks is the global batch mean.
    `pin`: in page-locked memory, so the copies to the GPU are asynchronous."""
    for block, n_global in porder.batches(epoch, warming, start_step):
        batch = to_batch(block, n_tasks)
        batch["weights"] = torch.full((block["n"],), world / n_global, dtype=torch.float32)
        batch["n_global"] = n_global
        yield pin_batch(batch) if pin else batch


def pin_batch(batch):
    out = dict(batch)
    for k, v in batch.items():
        if torch.is_tensor(v):
            out[k] = v.pin_memory()
        elif k.startswith("bags."):
            out[k] = [(a.pin_memory(), b.pin_memory()) for a, b in v]
    return out


class Progress:
    """An epoch's training rows and mean loss over every rank. Each step adds, on the device,
    this rank's loss share times the rows it stands for (--shuffle full: share · N / world =
    Σ of this rank's rows' losses; streaming: share · this rank's rows), so nothing is read on
    the host per step; `read()` sums over the ranks (a collective: every rank calls it at the
    same step) and returns (rows, summed loss) including what a resumed checkpoint had."""

    def __init__(self, d, seen=0, loss_sum=0.0):
        self.d, self.base_seen, self.base_loss = d, int(seen), float(loss_sum)
        self.rows = 0
        self.loss = torch.zeros((), dtype=torch.float64, device=d.device)

    def add(self, loss, batch):
        n_global = batch.get("n_global")
        self.rows += batch["n"]
        self.loss += loss.double() * (n_global / self.d.world if n_global is not None else batch["n"])

    def read(self):
        t = torch.stack([self.loss, torch.tensor(float(self.rows), dtype=torch.float64, device=self.d.device)])
        loss_sum, rows = self.d.sum_(t).tolist()
        return self.base_seen + int(round(rows)), self.base_loss + loss_sum


def start_ids_from_oov(encoder, id_tables):
    """End of warm start: every id row starts as the OOV vector the towers learnt to read (their
    Adam moments are still zero: no id row was read during warm start)."""
    with torch.no_grad():
        for i in id_tables:
            w = encoder.tables[i].weight
            b = encoder.buckets[i]
            w[:b].copy_(w[b:b + 1].expand(b, -1))
