"""One optimiser step of the global batch, as every rank takes it.

Each rank computes the loss of its rows of the global batch, weighted so that the mean over the
ranks is the global batch's loss (`batch["weights"]`, or --weight-column's Σ w·ℓ / Σ w); DDP
averages the towers' gradients and `sync_sparse` the tables', so every rank applies the
gradient one process would compute on the whole batch. Nothing here reads a device value on the
host (no `.item()`, no `float(loss)`); torch itself waits for the device where a sparse gradient
is coalesced (its size is data dependent), and the sparse sync of several GPUs reads the row
counts it all-gathers.
"""
import contextlib

import torch

from .distributed import sync_sparse
from .model import chain_loss


def add_l2_to_touched_rows(table, l2):
    g = table.weight.grad
    if g is None or l2 == 0:
        return
    g = g.coalesce()
    idx = g.indices()[0]
    vals = g.values() + l2 * table.weight.detach()[idx]
    table.weight.grad = torch.sparse_coo_tensor(g.indices(), vals, table.weight.shape, is_coalesced=True,
                                                check_invariants=False)


def to_device(batch, device):
    """The batch's tensors on `device` (copies from pinned memory overlap with the step)."""
    if device.type == "cpu":
        return batch
    out = dict(batch)
    for k, v in batch.items():
        if torch.is_tensor(v):
            out[k] = v.to(device, non_blocking=True)
        elif k.startswith("bags."):
            out[k] = [(a.to(device, non_blocking=True), b.to(device, non_blocking=True)) for a, b in v]
    return out


def batch_loss(r, batch, arch, pw, d, weighted):
    """This rank's share of the global batch's loss (DDP and sync_sparse average the ranks'
    gradients). Unweighted: Σ over this rank's rows of `batch["weights"]`·ℓ. --weight-column:
    Σ w·ℓ / Σ w over the global batch, so this rank's rows weigh w · world / Σw (Σw: one
    all-reduce on the device; a batch whose weights are all 0 has loss 0)."""
    if not weighted:
        return chain_loss(r, batch["labels"], arch, pw, batch["weights"])
    rw = batch["row_weight"]
    w_total = d.sum_(rw.double().sum())
    scale = torch.where(w_total > 0, d.world / w_total.clamp_min(1e-300), torch.zeros_like(w_total))
    return chain_loss(r, batch["labels"], arch, pw, rw * scale.to(rw.dtype))


class TrainStep:
    """forward (under bf16 autocast with `amp`), this rank's loss share, backward (DDP all-reduces
    the towers' gradients), the tables' sparse gradient sync, L2 on the touched rows, then both
    optimisers. `gradients` and `update` are separate so a test can read the synchronised
    gradients of one step."""

    def __init__(self, model, towers, opt_dense, opt_sparse, pos_weight, d, weighted, embedding_l2, amp=False):
        self.model, self.towers, self.opt_dense, self.opt_sparse = model, towers, opt_dense, opt_sparse
        self.pos_weight, self.d, self.weighted, self.l2 = pos_weight, d, weighted, embedding_l2
        self.amp = amp

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.d.device.type, dtype=torch.bfloat16)

    def gradients(self, batch):
        """Returns this rank's loss share (a detached device tensor) and leaves the global
        batch's gradients in `.grad`."""
        model = self.model
        with self.autocast():
            xu, xi = model.encoder(batch)
            r = self.towers(xu, xi)
        loss = batch_loss(r.float(), batch, model.arch, self.pos_weight, self.d, self.weighted)
        self.opt_dense.zero_grad(set_to_none=True)
        if self.opt_sparse is not None:
            self.opt_sparse.zero_grad(set_to_none=True)
        loss.backward()
        tables = list(model.encoder.tables)
        if self.d.on and tables:
            sync_sparse(tables, self.d.world)
        for table in tables:
            add_l2_to_touched_rows(table, self.l2)
        return loss.detach()

    def update(self):
        self.opt_dense.step()
        if self.opt_sparse is not None:
            self.opt_sparse.step()

    def __call__(self, batch):
        loss = self.gradients(batch)
        self.update()
        return loss
