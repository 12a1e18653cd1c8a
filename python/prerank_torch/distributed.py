"""Processes, devices and collectives of the trainer (torch.distributed, env:// as torchrun sets it).

`Dist` is this process's place in the job (rank, world, device, backend) and the few collectives
the trainer needs; `sync_sparse` averages the embedding tables' sparse gradients over the ranks;
`check_replicas` proves at the end of training that every rank holds the same weights.
"""
import datetime
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from .errors import InputError, TrainingError

# How long a collective waits for the other ranks before failing (--collective-timeout).
DEFAULT_COLLECTIVE_TIMEOUT_S = 600


def log(msg, rank=0):
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def resolve_device(device_arg, local_rank, world):
    """The torch device of this process: `--device` (cpu, cuda, cuda:N), else cuda:LOCAL_RANK when
    CUDA is available, else the CPU. `cuda` without an index is cuda:LOCAL_RANK (one GPU per
    process under torchrun; torch.cuda.set_device needs the index). An unusable device is an
    InputError (one line), not a traceback."""
    if not device_arg:
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(device_arg)
    except RuntimeError:
        raise InputError(f"--device must be cpu, cuda or cuda:N, not {device_arg}")
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InputError(f"--device must be cpu, cuda or cuda:N, not {device_arg}")
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise InputError(f"--device {device_arg}: CUDA is not available on this machine ({why}); use --device cpu")
    if device.index is None:
        device = torch.device("cuda", local_rank)
    elif world > 1:
        raise InputError(f"--device {device_arg} names one GPU for every process; under torchrun give --device cuda "
                         f"(process LOCAL_RANK takes cuda:LOCAL_RANK)")
    if device.index >= torch.cuda.device_count():
        raise InputError(f"--device {device_arg}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    return device


class Dist:
    """This process in the job: WORLD_SIZE, RANK, LOCAL_RANK as torchrun sets them (one process:
    world 1, no process group), its device, and the backend (NCCL on GPUs, gloo on CPUs)."""

    def __init__(self, device_arg, timeout_s=DEFAULT_COLLECTIVE_TIMEOUT_S):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        self.device = resolve_device(device_arg, self.local_rank, self.world)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.backend = None
        if self.world > 1:
            self.backend = "nccl" if self.device.type == "cuda" else "gloo"
            # A collective waits at most timeout_s for the other ranks (a dead or stuck rank
            # then fails every rank, and torchrun --max-restarts can restart the job).
            timeout = datetime.timedelta(seconds=timeout_s)
            restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
            if restart:
                # torchrun --max-restarts reuses its key-value store across restarts; the gloo/NCCL
                # rendezvous of the new processes read the dead ones' addresses from it and fail
                # ("connectFullMesh ... Connection refused", pytorch/pytorch#167288). A prefix per
                # restart gives every attempt keys of its own.
                store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
                dist.init_process_group(self.backend, store=dist.PrefixStore(f"prerank_torch/restart-{restart}/", store),
                                        rank=rank, world_size=world, timeout=timeout)
            else:
                dist.init_process_group(self.backend, timeout=timeout)

    @property
    def on(self):
        return self.world > 1

    def all_sum(self, array):
        t = torch.tensor(np.asarray(array, dtype=np.float64))
        if self.on:
            t = t.to(self.device)
            dist.all_reduce(t)
        return t.cpu().numpy()

    def all_sum_int(self, tensor):
        """Element-wise sum over ranks of an int64 tensor (in place on one process)."""
        if self.on:
            t = tensor.to(self.device)
            dist.all_reduce(t)
            return t.cpu()
        return tensor

    def sum_(self, tensor):
        """In-place sum over ranks of a tensor on this process's device; the host does not wait
        for it (the training loop's loss accumulator is read once per log line)."""
        if self.on:
            dist.all_reduce(tensor)
        return tensor

    def all_min(self, value):
        if not self.on:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def gather(self, obj):
        if not self.on:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self):
        if self.on:
            dist.destroy_process_group()


def sync_sparse(tables, world):
    """Every table's gradient := the mean over ranks of the ranks' sparse gradients.

    Three collectives per step whatever the number of tables: the per-table counts of touched
    rows, then the row ids and the rows of every table packed into one buffer each (padded to
    the largest rank's size). NCCL has no sparse all-reduce; all-gather works on gloo and NCCL.
    """
    device = tables[0].weight.device
    grads = []
    for t in tables:
        g = t.weight.grad
        if g is None:
            grads.append((torch.zeros(0, dtype=torch.int64, device=device), t.weight.new_zeros((0, t.weight.shape[1]))))
        else:
            g = g.coalesce()
            grads.append((g.indices()[0], g.values()))
    counts = torch.tensor([len(i) for i, _ in grads], dtype=torch.int64, device=device)
    all_counts = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(all_counts, counts)
    dims = [t.weight.shape[1] for t in tables]
    n_idx = max(int(c.sum()) for c in all_counts)
    n_val = max(int(sum(int(x) * d for x, d in zip(c.tolist(), dims))) for c in all_counts)
    idx = torch.zeros(n_idx, dtype=torch.int64, device=device)
    val = torch.zeros(n_val, dtype=tables[0].weight.dtype, device=device)
    ip = vp = 0
    for (i, v), d in zip(grads, dims):
        idx[ip:ip + len(i)] = i
        val[vp:vp + v.numel()] = v.reshape(-1)
        ip, vp = ip + len(i), vp + v.numel()
    all_idx = [torch.empty_like(idx) for _ in range(world)]
    all_val = [torch.empty_like(val) for _ in range(world)]
    dist.all_gather(all_idx, idx)
    dist.all_gather(all_val, val)
    parts = [[] for _ in tables]
    for c, ai, av in zip(all_counts, all_idx, all_val):
        ip = vp = 0
        for f, (n, d) in enumerate(zip(c.tolist(), dims)):
            parts[f].append((ai[ip:ip + n], av[vp:vp + n * d].reshape(n, d)))
            ip, vp = ip + n, vp + n * d
    for t, p in zip(tables, parts):
        rows = torch.cat([i for i, _ in p])
        vals = torch.cat([v for _, v in p]) / world
        t.weight.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), vals, t.weight.shape,
                                                check_invariants=False).coalesce()




def fingerprints(tensors):
    """One int64 per tensor that changes with any bit of it: Σ bits(x_j) · (j mod 65521 + 1),
    wrapping mod 2^64. A change of one element changes it (its weight is < 2^17 and the change of
    its 32 bits < 2^32, so the product is never a multiple of 2^64). Computed on the tensors'
    device, in chunks (tables can be large)."""
    out = []
    for t in tensors:
        flat = t.detach().float().contiguous().view(-1).view(torch.int32)
        total = torch.zeros((), dtype=torch.int64, device=flat.device)
        for start in range(0, flat.numel(), 1 << 24):
            part = flat[start:start + (1 << 24)].to(torch.int64)
            weight = torch.arange(start, start + part.numel(), device=flat.device, dtype=torch.int64) % 65521 + 1
            total += (part * weight).sum()
        out.append(total)
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.int64)


def check_replicas(named, d):
    """Every rank holds bit-identical tensors (`named`: name -> tensor, the same names on every
    rank): one all-gather of their fingerprints. Raises TrainingError naming the first tensor
    that differs; returns the number of tensors compared."""
    names = list(named)
    mine = fingerprints([named[n] for n in names]).to(d.device)
    if not d.on:
        return len(names)
    every = [torch.empty_like(mine) for _ in range(d.world)]
    dist.all_gather(every, mine)
    every = torch.stack(every).cpu()
    for j, name in enumerate(names):
        differ = [r for r in range(d.world) if every[r, j] != every[0, j]]
        if differ:
            raise TrainingError(f"ranks disagree after training: {name} on rank {differ[0]} differs from rank 0's "
                                f"({len(differ)} of {d.world - 1} other ranks)")
    return len(names)
