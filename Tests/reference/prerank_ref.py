"""Independent numpy reference for prerank's model math (SPEC §1, §3) and fusion (§2).

Written from the SPEC alone, in float64, sharing no code with the Swift implementation:
  * FNV-1a 64 hashing of `field + "\\x1f" + value` modulo buckets,
  * tower inputs: categorical -> embedding row, multi -> mean of rows, dense -> (v-mean)/std,
  * hidden blocks o_k^l = relu(W o_k^{l-1} + b) + [FR and k>0] o_{k-1}^l, final u_k = W o + b,
  * r_k = <u_k, v_k> + c_k, clamp r_k = min(r_k, 0) for k > 0,
  * additive chain logit_k = [LR and k>0] logit_{k-1} + r_k, multiplicative p_k = p_{k-1} sigmoid(r_k),
  * fusion additive a*ctr + b*ctcvr + g*rel, multiplicative ctr^a * ctcvr^b; ties by id ascending.
Models are read and written with the official `safetensors` package.
"""
import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
MASK64 = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def bucket(field: str, value, buckets: int) -> int:
    if isinstance(value, bool):
        raise ValueError("bool is not a categorical value")
    text = str(value) if isinstance(value, int) else value
    return fnv1a((field + "\x1f" + text).encode("utf-8")) % buckets



def sigmoid(x):
    """1 / (1 + e^-x); e^-x overflowing to inf for x < -709 gives the right 0, without numpy's warning."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))

class RefModel:
    def __init__(self, model_dir: str):
        with open(os.path.join(model_dir, "model.json")) as f:
            self.spec = json.load(f)
        self.w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "weights.safetensors")).items()}
        arch = self.spec["architecture"]
        self.hidden = arch["hidden"]
        self.d = arch["d"]
        self.fr, self.lr, self.clamp = arch["fr"], arch["lr"], arch["clamp"]
        self.chain = arch["chain"]
        self.tasks = [t["name"] for t in self.spec["tasks"]]
        self.features = self.spec["features"]

    def fields(self, side):
        return [f for f in self.features if f["side"] == side]

    def encode(self, side: str, values: dict) -> np.ndarray:
        blocks = []
        dense_i = 0
        mean = self.w.get(f"dense.{side}.mean")
        std = self.w.get(f"dense.{side}.std")
        for f in self.fields(side):
            name, kind = f["name"], f["kind"]
            v = values.get(name)
            if kind == "dense":
                x = 0.0 if v is None else (float(v) - mean[dense_i]) / std[dense_i]
                dense_i += 1
                blocks.append(np.array([x]))
                continue
            table = self.w[f"emb.{name}"]
            items = v if isinstance(v, list) else ([] if v is None else [v])
            items = [i for i in items if i is not None and i != ""]
            if not items:
                blocks.append(np.zeros(f["dim"]))
            else:
                blocks.append(np.mean([table[bucket(name, i, f["buckets"])] for i in items], axis=0))
        return np.concatenate(blocks) if blocks else np.zeros(0)

    def tower(self, side: str, x: np.ndarray) -> np.ndarray:
        """Returns [T, d] final outputs for one input row."""
        outs = []
        prev = None
        L = len(self.hidden) + 1
        for k, task in enumerate(self.tasks):
            o = x
            cur = []
            for l in range(L):
                W = self.w[f"{side}.{task}.{l}.weight"]
                b = self.w[f"{side}.{task}.{l}.bias"]
                z = W @ o + b
                if l < L - 1:
                    z = np.maximum(z, 0)
                    if self.fr and k > 0:
                        z = z + prev[l]
                cur.append(z)
                o = z
            prev = cur
            outs.append(cur[-1])
        return np.stack(outs)

    def probabilities(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        T = len(self.tasks)
        p = np.zeros(T)
        logit_prev, p_prev = 0.0, 1.0
        for k, task in enumerate(self.tasks):
            r = float(u[k] @ v[k]) + float(self.w[f"head.{task}.bias"][0])
            if self.clamp and k > 0:
                r = min(r, 0.0)
            if self.chain == "additive":
                logit = logit_prev + r if (self.lr and k > 0) else r
                logit_prev = logit
                p[k] = sigmoid(logit)
            else:
                p_prev = p_prev * sigmoid(r)
                p[k] = p_prev
        return p


def fuse(formula, alpha, beta, gamma, ctr, ctcvr, rel):
    if formula == "additive":
        return alpha * ctr + beta * ctcvr + gamma * rel
    return (ctr ** alpha) * (ctcvr ** beta)


def read_catalog(path, model: RefModel):
    """items.csv -> {id: item feature dict} using the SPEC's CSV conventions."""
    import csv
    kinds = {f["name"]: f["kind"] for f in model.fields("item")}
    items = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            vals = {}
            for name, kind in kinds.items():
                cell = row.get(name)
                if cell is None or cell == "":
                    vals[name] = None if kind != "multi" else []
                elif kind == "multi":
                    vals[name] = [c for c in cell.split("|") if c]
                elif kind == "dense":
                    vals[name] = float(cell)
                else:
                    vals[name] = cell
            items[int(row["item_id"])] = vals
    return items


def score_request(model: RefModel, item_vectors: dict, request: dict, fusion: dict, k_default=100, k_max=1000,
                  with_cond=False):
    """Reference /prerank answer: (items [(id, score, probs)], unknown_ids)."""
    uq = dict(request.get("user", {}))
    uq.update(request.get("query", {}))
    u = model.tower("user", model.encode("user", uq))
    cands = request.get("candidates")
    rel = request.get("relevance")
    if cands is None:
        cands = sorted(item_vectors)
    unknown, seen, scored = [], set(), []
    for i, cid in enumerate(cands):
        if cid not in item_vectors:
            if cid not in unknown:  # listed once each, in request order
                unknown.append(cid)
            continue
        if cid in seen:
            continue
        seen.add(cid)
        p = model.probabilities(u, item_vectors[cid])
        # Condition of the dot products: an F32 index stores u and v rounded to float32, so each
        # r_k carries ~1.2e-7 * sum|u_i v_i| of rounding error whatever the implementation.
        cond = float(np.sum(np.abs(u * item_vectors[cid])))
        s = fuse(fusion["formula"], fusion["alpha"], fusion["beta"], fusion.get("gamma", 0.0), p[0], p[-1],
                 rel[i] if rel else 0.0)
        scored.append((cid, s, p, cond))
    scored.sort(key=lambda t: (-t[1], t[0]))
    scored = [(cid, s, p) for cid, s, p, cond in scored] if not with_cond else scored
    k = min(request.get("k", k_default), k_max)
    return scored[:k], unknown, scored


def random_model(out_dir, tasks=("ctr", "atcr", "ctcvr"), hidden=(16, 8), d=8, fr=True, lr=True, clamp=False,
                 chain="additive", seed=0, version="py-random", item_buckets=211):
    """Writes a random model in the SPEC's format with the official safetensors writer."""
    rng = np.random.default_rng(seed)
    features = [
        {"name": "user_id", "side": "user", "kind": "categorical", "buckets": 101, "dim": 4},
        {"name": "query_terms", "side": "user", "kind": "multi", "buckets": 53, "dim": 4},
        {"name": "segment", "side": "user", "kind": "categorical", "buckets": 7, "dim": 3},
        {"name": "age", "side": "user", "kind": "dense"},
        {"name": "item_id", "side": "item", "kind": "categorical", "buckets": item_buckets, "dim": 4},
        {"name": "brand", "side": "item", "kind": "categorical", "buckets": 31, "dim": 3},
        {"name": "tags", "side": "item", "kind": "multi", "buckets": 41, "dim": 3},
        {"name": "price", "side": "item", "kind": "dense"},
        {"name": "rating", "side": "item", "kind": "dense"},
    ]
    spec = {"format": "prerank-model/1", "version": version,
            "tasks": [{"name": t, "label": f"label_{t}"} for t in tasks],
            "architecture": {"hidden": list(hidden), "d": d, "fr": fr, "lr": lr, "clamp": clamp, "chain": chain},
            "features": features, "training": {"note": "random, written by numpy"}}
    t = {}
    for f in features:
        if f["kind"] != "dense":
            t[f"emb.{f['name']}"] = rng.normal(0, 0.5, (f["buckets"], f["dim"])).astype(np.float32)
    for side in ("user", "item"):
        n = sum(1 for f in features if f["side"] == side and f["kind"] == "dense")
        t[f"dense.{side}.mean"] = rng.normal(0, 1, n).astype(np.float32)
        t[f"dense.{side}.std"] = rng.uniform(0.5, 2, n).astype(np.float32)
        width = sum(1 if f["kind"] == "dense" else f["dim"] for f in features if f["side"] == side)
        for task in tasks:
            w_in = width
            for l, out in enumerate(list(hidden) + [d]):
                t[f"{side}.{task}.{l}.weight"] = rng.normal(0, 0.6 / np.sqrt(w_in), (out, w_in)).astype(np.float32)
                t[f"{side}.{task}.{l}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)
                w_in = out
    for k, task in enumerate(tasks):
        t[f"head.{task}.bias"] = np.array([-1.0 - k], dtype=np.float32)
    os.makedirs(out_dir, exist_ok=True)
    # Shuffle insertion order: the official writer sorts by dtype/name, the reader must not care.
    keys = list(t)
    rng.shuffle(keys)
    save_file({k: t[k] for k in keys}, os.path.join(out_dir, "weights.safetensors"))
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return spec


def write_catalog(path, n, seed=0, id_offset=1000, sparse=True):
    import csv
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(id_offset, id_offset + 3 * n, 3))[:n] if sparse else np.arange(id_offset, id_offset + n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "brand", "tags", "price", "rating", "extra_column"])
        for i, iid in enumerate(ids):
            brand = "" if i % 17 == 0 else f"b{rng.integers(0, 50)}"
            tags = "|".join(f"t{x}" for x in rng.integers(0, 30, rng.integers(0, 4)))
            price = "" if i % 13 == 0 else f"{rng.uniform(1, 100):.3f}"
            rating = f"{rng.uniform(1, 5):.2f}"
            w.writerow([int(iid), brand, tags, price, rating, "ignored, \"quoted\""])
    return [int(i) for i in ids]
