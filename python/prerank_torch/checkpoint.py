"""Checkpoints: written atomically, read back only by a run that would take the same steps.

A checkpoint holds the model, both optimisers' state, the best epoch so far, the epoch
schedule's state (phase, epochs since the best) and where the run
stands (epoch, step, rows and loss so far). `run_record` is what decides the steps — seed,
batch, learning rates, L2, positive weights, the sample-weight column, the process count, the
order (and for the streaming order its shards and workers) and the data files with their sizes;
a resume whose record differs is refused with one line naming the first difference, rather than
continuing a different training than the checkpoint's.
"""
import contextlib
import os

import torch

from .errors import InputError

CHECKPOINT_FORMAT = "prerank-torch-checkpoint/2"  # 2: the epoch schedule's state (schedule.py)

# (record key, the flag a user changes, how it prints)
RECORD_FLAGS = [("seed", "--seed"), ("batch", "--batch"), ("lr", "--lr"), ("embedding_lr", "--embedding-lr"),
                ("embedding_l2", "--embedding-l2"), ("pos_weight", "--pos-weight"),
                ("weight_column", "--weight-column"), ("world_size", "the number of processes (torchrun)"),
                ("order", "--shuffle"), ("data_shards", "--data-shards"), ("workers", "--workers"),
                ("data", "--data (files and sizes)")]


def data_files(sources):
    """(file name, size in bytes) of every input file: the same data under the same names."""
    out = []
    for path in sources:
        try:
            out.append([os.path.basename(path), os.path.getsize(path)])
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})")
    return out


def run_record(args, world, sources, full, shards, emb_lr, pos_weight):
    """What a resumed run must share with the checkpoint's run to take its steps."""
    return {"seed": args.seed, "batch": args.batch, "lr": args.lr, "embedding_lr": emb_lr,
            "embedding_l2": args.embedding_l2, "pos_weight": list(pos_weight), "weight_column": args.weight_column,
            "world_size": world, "order": "full" if full else "buffer",
            # The streaming order depends on the shards and the loader workers; the full order does not.
            "data_shards": None if full else shards, "workers": None if full else args.workers,
            "data": data_files(sources)}


def check_resumable(path, state, record, ignore=()):
    """Raises InputError (one line) naming the first setting the checkpoint's run had otherwise
    (`ignore`: keys not known yet)."""
    theirs = state.get("run")
    if theirs is None:
        raise InputError(f"{path}: checkpoint records no run settings (written by an older prerank_torch); "
                         f"start afresh without --resume")
    for key, flag in RECORD_FLAGS:
        if key not in ignore and theirs.get(key) != record.get(key):
            raise InputError(f"{path}: checkpoint was written with {flag} = {show(theirs.get(key))}, this run has "
                             f"{show(record.get(key))}; resume with the same value or start afresh without --resume")


def show(value):
    if isinstance(value, list) and value and isinstance(value[0], list):
        return ", ".join(f"{n} ({s} bytes)" for n, s in value)
    return "none" if value is None else str(value)


def save_checkpoint(path, state):
    """Atomically: into a temporary file beside `path`, flushed to disk (fsync), renamed over
    `path`, then the directory synced. A crash or kill at any point (torchrun stopping the job)
    leaves the previous checkpoint or the new one, never a torn file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except OSError as e:
        raise InputError(f"{path}: cannot read checkpoint ({e.strerror})")
    except Exception as e:  # a file that is not a checkpoint
        raise InputError(f"{path}: not a prerank_torch checkpoint ({type(e).__name__})")
