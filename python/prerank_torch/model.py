"""The twin-tower ResFlow model of SPEC §1 in PyTorch, and the model directory (export/import).

    hidden block l of task k:  o_k^l = relu(W_k^l o_k^{l-1} + b_k^l) + [FR and k>0] o_{k-1}^l   (o^{-1} = x)
    final block:               u_k = W_k^{L-1} o_k^{L-2} + b_k^{L-1}   (item tower: v_k)
    residual logit:            r_k = <u_k, v_k> + c_k,  clamp: r_k = min(r_k, 0) for k > 0
    additive chain:            logit_k = [LR and k>0] logit_{k-1} + r_k,  p_k = σ(logit_k)
    multiplicative (ESMM):     p_k = p_{k-1} σ(r_k)

`Encoder` holds the embedding tables (one `nn.EmbeddingBag(mode="mean", sparse=True)` per
categorical/multi field, shared by all tasks) and the dense statistics; `Towers` holds the
per-task towers of both sides and the heads `c_k`. They are separate modules because training
wraps only `Towers` in DistributedDataParallel and synchronises the sparse table gradients
itself (see train.py).
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import InputError
from .spec import FORMAT, check_spec, fields, width

SIDES = ("user", "item")


class Encoder(nn.Module):
    """With `oov=True` (training) every table has one more row, index `buckets`: the field's
    out-of-vocabulary row (docs/ARCHITECTURE.md "Feature admission"). `admit(...)` sets the
    bucket → row map of frequency admission; `ids_off` (table indices) routes those tables'
    values to their OOV row (id warm start); `exported_weight` gives a table as the model file
    holds it (`buckets` rows, every non-admitted bucket holding the OOV vector)."""

    def __init__(self, features, oov=False):
        super().__init__()
        self.features = features
        self.oov = oov
        self.ids_off = set()
        self.export_ids_off = set()
        self.buckets = []
        self.emb_names = {s: [f["name"] for f in fields(features, s) if f["kind"] != "dense"] for s in SIDES}
        self.layout = {s: [(f["kind"], f["name"]) for f in fields(features, s)] for s in SIDES}
        self.tables = nn.ModuleList()
        self.table_index = {}
        for f in features:
            if f["kind"] != "dense":
                self.table_index[f["name"]] = len(self.tables)
                self.buckets.append(f["buckets"])
                self.tables.append(nn.EmbeddingBag(f["buckets"] + int(oov), f["dim"], mode="mean", sparse=True))
                self.register_buffer(f"row_of_{len(self.tables) - 1}", None, persistent=False)
        for s in SIDES:
            n = sum(1 for f in fields(features, s) if f["kind"] == "dense")
            self.register_buffer(f"mean_{s}", torch.zeros(n))
            self.register_buffer(f"std_{s}", torch.ones(n))

    def table(self, name):
        return self.tables[self.table_index[name]]

    def admit(self, index, admitted):
        """Frequency admission of table `index`: `admitted` [buckets] bool; None: every bucket."""
        if admitted is None:
            setattr(self, f"row_of_{index}", None)
            return
        b = self.buckets[index]
        row_of = torch.where(torch.as_tensor(admitted, dtype=torch.bool), torch.arange(b), torch.full((b,), b))
        row_of = torch.cat([row_of, torch.tensor([b])])  # the OOV index maps to itself (id dropout)
        setattr(self, f"row_of_{index}", row_of.to(self.tables[index].weight.device))

    def rows(self, index, flat):
        """Bag indices (buckets, or `buckets` for a value already routed to the OOV row) → table rows."""
        if not self.oov:
            return flat
        if index in self.ids_off:
            return torch.full_like(flat, self.buckets[index])
        row_of = getattr(self, f"row_of_{index}")
        return flat if row_of is None else row_of[flat]

    def exported_weight(self, index):
        """Table `index` as the model file holds it: `buckets` rows; with an OOV row, every
        non-admitted bucket (every bucket of a table in `export_ids_off`) holds the OOV vector."""
        w = self.tables[index].weight
        if not self.oov:
            return w
        b = self.buckets[index]
        if index in self.export_ids_off:
            return w[b:b + 1].expand(b, -1)
        row_of = getattr(self, f"row_of_{index}")
        return w[:b] if row_of is None else w[row_of[:b]]

    def side(self, side, dense, bags):
        """Tower input x [B, width] from raw dense values [B, n] (NaN: missing) and bags."""
        mean, std = getattr(self, f"mean_{side}"), getattr(self, f"std_{side}")
        z = (dense - mean) / std
        z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        blocks, di, ei = [], 0, 0
        for kind, name in self.layout[side]:
            if kind == "dense":
                blocks.append(z[:, di:di + 1])
                di += 1
            else:
                flat, offsets = bags[ei]
                ti = self.table_index[name]
                blocks.append(self.tables[ti](self.rows(ti, flat), offsets))
                ei += 1
        if not blocks:
            return dense.new_zeros((dense.shape[0], 0))
        return torch.cat(blocks, dim=1)

    def forward(self, batch):
        return (self.side("user", batch["dense.user"], batch["bags.user"]),
                self.side("item", batch["dense.item"], batch["bags.item"]))


class Towers(nn.Module):
    def __init__(self, tasks, features, arch):
        super().__init__()
        self.T = len(tasks)
        self.fr = bool(arch["fr"])
        widths = list(arch["hidden"]) + [arch["d"]]
        self.towers = nn.ModuleDict()
        for s in SIDES:
            per_task = nn.ModuleList()
            for _ in range(self.T):
                blocks, w_in = nn.ModuleList(), width(features, s)
                for out in widths:
                    blocks.append(nn.Linear(w_in, out))
                    w_in = out
                per_task.append(blocks)
            self.towers[s] = per_task
        self.head = nn.Parameter(torch.zeros(self.T))

    def tower(self, side, x):
        """[B, T, d]: u_k (or v_k) of every task."""
        outs, prev = [], None
        for k, blocks in enumerate(self.towers[side]):
            o, cur = x, []
            L = len(blocks)
            for l, lin in enumerate(blocks):
                o = lin(o)
                if l < L - 1:
                    o = torch.relu(o)
                    if self.fr and k > 0:
                        o = o + prev[l]
                cur.append(o)
            prev = cur
            outs.append(o)
        return torch.stack(outs, dim=1)

    def forward(self, xu, xi):
        """Residual logits r_k = <u_k, v_k> + c_k, [B, T] (before the clamp)."""
        u, v = self.tower("user", xu), self.tower("item", xi)
        return (u * v).sum(-1) + self.head


def chain(r, arch):
    """(p [B, T], logits) from residual logits: clamp, then the additive or multiplicative chain.
    For additive chains `logits` are the chained logits; for ESMM the log-probabilities."""
    if arch["clamp"] and r.shape[1] > 1:
        r = torch.cat([r[:, :1], r[:, 1:].clamp(max=0.0)], dim=1)
    if arch["chain"] == "additive":
        logits = torch.cumsum(r, dim=1) if arch["lr"] else r
        return torch.sigmoid(logits), logits
    logp = torch.cumsum(F.logsigmoid(r), dim=1)
    return torch.exp(logp), logp


def chain_loss(r, labels, arch, pos_weight, row_weights=None):
    """Weighted BCE summed over tasks, mean over the batch (positives of task k weigh pos_weight[k]);
    with `row_weights`, the weighted sum over rows instead of the mean."""
    p, z = chain(r, arch)
    w = torch.where(labels > 0.5, pos_weight, torch.ones_like(pos_weight))
    if arch["chain"] == "additive":
        per = labels * F.softplus(-z) + (1 - labels) * F.softplus(z)
    else:
        logp = z.clamp(max=-1e-7)
        per = -labels * logp - (1 - labels) * torch.log(-torch.expm1(logp))
    per_row = (w * per).sum(1)
    return per_row.mean() if row_weights is None else (per_row * row_weights).sum()


class TwinTower(nn.Module):
    def __init__(self, tasks, features, arch, version="torch", training=None, oov=False):
        super().__init__()
        check_spec(tasks, features, "model")
        self.tasks, self.features, self.arch = tasks, features, arch
        self.version, self.training_info = version, training or {}
        self.encoder = Encoder(features, oov=oov)
        self.towers = Towers(tasks, features, arch)

    def forward(self, batch):
        xu, xi = self.encoder(batch)
        return self.towers(xu, xi)

    def probabilities(self, batch):
        return chain(self.forward(batch), self.arch)[0]

    # --- initialisation as `prerank train` does it ---------------------------------------
    def initialise_as_prerank_train(self, seed, positives=None, rows=0):
        """The initial weights `prerank train --seed seed` starts from, draw for draw
        (TrainingSession.init: ModelStore.random, then the OOV rows, embeddings × 0.1)."""
        from .swiftrng import SplitMix64
        rng = SplitMix64(seed)
        enc = self.encoder
        embedded = [f for f in self.features if f["kind"] != "dense"]
        with torch.no_grad():
            for f in embedded:  # drawn in chunks (tables may be large), scaled × 0.1 below
                w, n, done = enc.tables[enc.table_index[f["name"]]].weight, f["buckets"] * f["dim"], 0
                flat = w[:f["buckets"]].view(-1)
                while done < n:
                    k = min(n - done, 1 << 22)
                    flat[done:done + k].copy_(torch.from_numpy(rng.floats(k, -0.5, 0.5) * np.float32(0.1)))
                    done += k
        for s in SIDES:  # ModelStore.random's random dense statistics (overwritten by the data's)
            n = getattr(enc, f"mean_{s}").numel()
            rng.floats(n, -1, 1)
            rng.floats(n, 0.5, 2)
        with torch.no_grad():
            for s in SIDES:
                for blocks in self.towers.towers[s]:
                    for l, lin in enumerate(blocks):
                        bound = np.float32(math.sqrt(6.0 / max(lin.in_features, 1)))
                        if l == len(blocks) - 1:
                            bound = bound * np.float32(0.5)
                        w = rng.floats(lin.weight.numel(), -bound, bound)
                        lin.weight.copy_(torch.from_numpy(w.reshape(lin.weight.shape)))
                        lin.bias.zero_()
            for f in embedded:
                oov = rng.floats(f["dim"], -0.5, 0.5)
                t = enc.tables[enc.table_index[f["name"]]].weight
                b = f["buckets"]
                if t.shape[0] > b:  # the OOV row (drawn whether or not the table has it)
                    t[b].copy_(torch.from_numpy(oov * np.float32(0.1)))
            if positives is not None:
                self.towers.head.copy_(torch.tensor(initial_heads(self.arch, positives, rows)))

    initialise = initialise_as_prerank_train

    def initialise_oov_rows(self, generator):
        with torch.no_grad():
            for t, b in zip(self.encoder.tables, self.encoder.buckets):
                if t.weight.shape[0] > b:
                    t.weight[b:].copy_(torch.rand((1, t.weight.shape[1]), generator=generator) * 0.1 - 0.05)

    def with_oov_rows(self, seed):
        """This model with one more row per table (training's OOV row, U(±0.05) from `seed`)."""
        m = TwinTower(self.tasks, self.features, self.arch, version=self.version, training=self.training_info, oov=True)
        with torch.no_grad():
            for t, src in zip(m.encoder.tables, self.encoder.tables):
                t.weight[:src.weight.shape[0]].copy_(src.weight)
            for s in SIDES:
                getattr(m.encoder, f"mean_{s}").copy_(getattr(self.encoder, f"mean_{s}"))
                getattr(m.encoder, f"std_{s}").copy_(getattr(self.encoder, f"std_{s}"))
            m.towers.load_state_dict(self.towers.state_dict())
        m.initialise_oov_rows(torch.Generator().manual_seed(int(seed)))
        return m

    # --- model directory ----------------------------------------------------------------
    def state_tensors(self):
        """The SPEC's tensors (CPU float32, contiguous), by name."""
        t = {}
        for f in self.features:
            if f["kind"] != "dense":
                t[f"emb.{f['name']}"] = self.encoder.exported_weight(self.encoder.table_index[f["name"]])
        for s in SIDES:
            mean = getattr(self.encoder, f"mean_{s}")
            if mean.numel() > 0:
                t[f"dense.{s}.mean"] = mean
                t[f"dense.{s}.std"] = getattr(self.encoder, f"std_{s}")
            for k, task in enumerate(self.tasks):
                for l, lin in enumerate(self.towers.towers[s][k]):
                    t[f"{s}.{task['name']}.{l}.weight"] = lin.weight
                    t[f"{s}.{task['name']}.{l}.bias"] = lin.bias
        for k, task in enumerate(self.tasks):
            t[f"head.{task['name']}.bias"] = self.towers.head[k:k + 1]
        return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in t.items()}

    def spec(self):
        return {"format": FORMAT, "version": self.version, "tasks": self.tasks, "architecture": self.arch,
                "features": self.features, "training": self.training_info}

    def export(self, out_dir):
        """Writes model.json + weights.safetensors (official safetensors writer); atomic per file."""
        from safetensors.torch import save_file
        os.makedirs(out_dir, exist_ok=True)
        weights = os.path.join(out_dir, "weights.safetensors")
        save_file(self.state_tensors(), weights + ".tmp")
        os.replace(weights + ".tmp", weights)
        spec_path = os.path.join(out_dir, "model.json")
        with open(spec_path + ".tmp", "w") as f:
            json.dump(self.spec(), f, indent=1)
            f.write("\n")
        os.replace(spec_path + ".tmp", spec_path)

    @classmethod
    def load(cls, model_dir):
        """Reads a prerank model directory (written by `prerank train`, this package, or anyone
        writing the SPEC's names), checking every tensor's shape."""
        from safetensors.torch import load_file
        from .spec import load_model_json
        spec = load_model_json(model_dir)
        path = os.path.join(model_dir, "weights.safetensors")
        try:
            w = load_file(path)
        except Exception as e:
            raise InputError(f"{path}: cannot read safetensors ({e})")
        a = spec["architecture"]
        arch = {"hidden": list(a["hidden"]), "d": int(a["d"]), "fr": bool(a["fr"]), "lr": bool(a["lr"]),
                "clamp": bool(a["clamp"]), "chain": a["chain"]}
        m = cls(spec["tasks"], spec["features"], arch, version=spec.get("version", "imported"),
                training=spec.get("training") or {})
        mine = m.state_tensors()
        for name, ref in mine.items():
            if name not in w:
                raise InputError(f"{path}: missing tensor {name}")
            if tuple(w[name].shape) != tuple(ref.shape):
                raise InputError(f"{path}: tensor {name} has shape {list(w[name].shape)}, expected {list(ref.shape)}")
        with torch.no_grad():
            for f in m.features:
                if f["kind"] != "dense":
                    m.encoder.table(f["name"]).weight.copy_(w[f"emb.{f['name']}"].float())
            for s in SIDES:
                if f"dense.{s}.mean" in mine:
                    getattr(m.encoder, f"mean_{s}").copy_(w[f"dense.{s}.mean"].float())
                    getattr(m.encoder, f"std_{s}").copy_(w[f"dense.{s}.std"].float())
                for k, task in enumerate(m.tasks):
                    for l, lin in enumerate(m.towers.towers[s][k]):
                        lin.weight.copy_(w[f"{s}.{task['name']}.{l}.weight"].float())
                        lin.bias.copy_(w[f"{s}.{task['name']}.{l}.bias"].float())
            for k, task in enumerate(m.tasks):
                m.towers.head[k] = w[f"head.{task['name']}.bias"].float()[0]
        return m


def initial_heads(arch, positives, rows):
    """c_k so that the untrained chain predicts each task's base rate (as `prerank train`)."""
    rates = [(p + 1) / (rows + 2) for p in positives]

    def logit(p):
        return math.log(p / (1 - p))

    out = []
    for k, rate in enumerate(rates):
        prev = rates[k - 1] if k > 0 else 1.0
        if arch["chain"] == "multiplicative":
            out.append(logit(min(rate / prev, 1 - 1e-6)))
        elif arch["lr"] and k > 0:
            out.append(logit(rate) - logit(prev))
        else:
            out.append(logit(rate))
    return out


def encode_request_side(model, side, values):
    """Tower input of one request side (SPEC §2 feature maps) as a batch of one; for parity tests
    and offline scoring. Categorical values: str or int; multi: lists; dense: numbers."""
    from .hashing import bucket, value_text
    feats = fields(model.features, side)
    dense, bags = [], []
    for f in feats:
        v = values.get(f["name"])
        if f["kind"] == "dense":
            dense.append(math.nan if v is None else float(v))
            continue
        items = v if isinstance(v, list) else ([] if v is None else [v])
        rows = [bucket(f["name"], i, f["buckets"]) for i in items if value_text(i, f["name"]) is not None]
        bags.append((torch.tensor(rows, dtype=torch.int64), torch.tensor([0], dtype=torch.int64)))
    return torch.tensor([dense], dtype=torch.float32).reshape(1, len(dense)), bags


class PrerankAdam(torch.optim.Optimizer):
    """Adam exactly as `prerank train` steps it (Sources/Training/Train/Adam.swift):
    `p -= lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)`. torch.optim.Adam adds ε to √v/√(1−β₂ᵗ) instead,
    which in the first steps is a 30× smaller ε; for parameters whose gradient is near 1e-8
    (rarely active ReLU units) the two step sizes then differ by up to lr. SparseAdam already has
    this form."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads, ms, vs = [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
            t = self.state[params[0]]["step"]
            a = group["lr"] * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            torch._foreach_mul_(ms, b1)
            torch._foreach_add_(ms, grads, alpha=1 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, ms, denom, value=-a)
