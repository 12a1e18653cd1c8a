#!/usr/bin/env python3
"""Non-twin-tower reference models: how much of each label is learnable from these features?

Why: `prerank train` fits a twin tower, which scores a user and an item only through a dot product
of two separately computed embeddings, so it cannot use arbitrary user x item crosses. This script
fits two models that *do* see the user and item fields jointly, on the same features.yaml fields:

  * GBDT (LightGBM) on native categoricals, multi-field token indicators, dense fields, value-match
    counts (e.g. query_category == item_category) and out-of-fold target encodings of the ids and
    of every user-field x item-field pair;
  * hashed logistic regression on one-hot fields plus all user-field x item-field pair crosses.

Per label it prints the test AUC of both, next to the AUC of the generator's true probability
(`truth_<label>` in test.csv, when present). If a GBDT with crosses lands near the twin tower, the
gap to the truth is the data's (id-level idiosyncrasy that ~50 impressions per item cannot reveal);
if it lands well above, the twin tower leaves learnable signal on the table.

Only the fields listed in features.yaml are used as features: truth_*, relevance, request_id and any
other column are ignored (request_id only groups rows for the early-stopping split).

Usage:
    python3 scripts/baselines.py DATA_DIR [--max-train-rows N] [--seed S] [--ids te|native]
            [--lr-c 0.03[,0.1...]] [--skip-lr]
  DATA_DIR holds features.yaml, train.csv and test.csv (SPEC.md section 3).
  Needs: python3 -m pip install pandas scikit-learn lightgbm pyyaml
Runs on one core (num_threads=1, BLAS/OpenMP pinned to 1 thread).
"""
import os

# Pin every thread pool to one core *before* numpy/scipy/lightgbm load: this machine is shared.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

import lightgbm as lgb

HIGH_CARD = 1000       # a categorical with more distinct train values is an "id"
TOP_TOKENS = 32        # per multi field, the most frequent tokens become 0/1 GBDT columns
DENSE_BINS = 16        # quantile bins of a dense field for the hashed LR
HASH_BITS = 22         # hashed LR feature space: 4M columns
TE_FOLDS = 5           # out-of-fold target encoding on the fit part of train
TE_PRIOR = 20.0        # pseudo-count pulling a target encoding toward the global rate
VALID_FRACTION = 0.1   # share of train (by request) held out for early stopping / choosing C


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Loading


def load(data_dir, max_train_rows, seed):
    """Reads features.yaml and the two CSVs, keeping only the columns we are allowed to use."""
    spec = yaml.safe_load(open(os.path.join(data_dir, "features.yaml")))
    features = spec["features"]
    labels = [t["label"] for t in spec["tasks"]]
    names = [f["name"] for f in features]

    def read(path):
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in names + labels if c not in header]
        if missing:
            sys.exit(f"{path}: missing columns {missing}")
        extra = ["request_id"] if "request_id" in header else []
        extra += [f"truth_{l}" for l in labels if f"truth_{l}" in header]
        # Everything as text first: ids like "007" or "42" must stay categorical values as written,
        # and empty cells must stay "" (not NaN) for categorical/multi fields.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=names + labels + extra)
        for l in labels:
            df[l] = df[l].astype(np.int8)
        for c in extra:
            if c.startswith("truth_"):
                df[c] = pd.to_numeric(df[c], errors="coerce")
        for f in features:
            if f["kind"] == "dense":
                df[f["name"]] = pd.to_numeric(df[f["name"]], errors="coerce")  # "" -> NaN
        return df

    train = read(os.path.join(data_dir, "train.csv"))
    test = read(os.path.join(data_dir, "test.csv"))
    if max_train_rows and len(train) > max_train_rows:
        # Subsample whole requests when we can, so a request's candidates stay together.
        rng = np.random.default_rng(seed)
        if "request_id" in train:
            reqs = rng.permutation(train["request_id"].unique().astype(object))
            sizes = train.groupby("request_id", sort=False).size().reindex(reqs).to_numpy()
            keep = set(reqs[: int(np.searchsorted(np.cumsum(sizes), max_train_rows)) + 1])
            train = train[train["request_id"].isin(keep)]
        else:
            train = train.iloc[np.sort(rng.choice(len(train), max_train_rows, replace=False))]
        train = train.reset_index(drop=True)
    return features, labels, train, test


def split_valid(train, seed):
    """Boolean mask of the early-stopping rows: whole requests if request_id exists, else rows."""
    rng = np.random.default_rng(seed + 1)
    if "request_id" in train:
        codes, uniq = pd.factorize(train["request_id"])
        return rng.random(len(uniq))[codes] < VALID_FRACTION
    return rng.random(len(train)) < VALID_FRACTION


# ----------------------------------------------------------------------------------------------
# Shared encoding: every categorical/multi value becomes an integer code, every dense a float.


class Field:
    """One features.yaml field encoded over train+test rows (train first, then test).

    single fields (categorical, and dense after binning for the LR): `codes[row]`
    multi fields: parallel arrays `rows`, `tok` (one entry per token occurrence)
    """

    def __init__(self, spec, all_values, n_train):
        self.name, self.side, self.kind = spec["name"], spec["side"], spec["kind"]
        n = len(all_values)
        if self.kind == "categorical":
            # Codes from train+test together: a code only names a value, it carries no label.
            self.codes, self.uniq = pd.factorize(all_values)
            self.n_codes = len(self.uniq)
            self.train_distinct = len(np.unique(self.codes[:n_train]))
            self.vocab = set(self.uniq)
        elif self.kind == "multi":
            toks = all_values.str.split("|").explode()
            toks = toks[toks != ""]
            self.rows = toks.index.to_numpy()
            self.tok, self.uniq = pd.factorize(toks.to_numpy())
            self.n_codes = len(self.uniq)
            self.count = np.bincount(self.rows, minlength=n)
            self.vocab = set(self.uniq)
            self.train_distinct = len(np.unique(self.tok[self.rows < n_train]))
        else:  # dense
            self.x = all_values.to_numpy(dtype=np.float64)
            # Quantile bins from train only; NaN gets its own bin (index len(edges) + 1).
            qs = np.nanquantile(self.x[:n_train], np.linspace(0, 1, DENSE_BINS + 1)[1:-1])
            edges = np.unique(qs)
            self.codes = np.where(np.isnan(self.x), len(edges) + 1, np.searchsorted(edges, self.x))
            self.n_codes = len(edges) + 2
            self.train_distinct = self.n_codes
            self.vocab = set()

    @property
    def is_id(self):
        return self.kind == "categorical" and self.train_distinct > HIGH_CARD


def encode_fields(features, train, test):
    both = pd.concat([train, test], ignore_index=True)
    return [Field(f, both[f["name"]], len(train)) for f in features]


# ----------------------------------------------------------------------------------------------
# GBDT features


def value_match_pairs(fields):
    """User x item field pairs that share a vocabulary (e.g. query_category / item_category,
    query_terms / brand): their per-row overlap is a cross a GBDT would otherwise need many
    splits to express. Found from the data, so no field names are hard-coded."""
    pairs = []
    for u in fields:
        for i in fields:
            if u.side == "user" and i.side == "item" and u.vocab and i.vocab:
                shared = len(u.vocab & i.vocab)
                if shared >= 5 and shared >= 0.1 * min(len(u.vocab), len(i.vocab)):
                    pairs.append((u, i))
    return pairs


def overlap_count(u, i, n):
    """Per row: how many values of field u also occur in field i of the same row."""
    # Compare values as text so codes from the two fields' separate factorisations don't matter.
    def rows_values(f):
        if f.kind == "multi":
            return f.rows, f.uniq[f.tok]
        return np.arange(n), f.uniq[f.codes]

    ur, uv = rows_values(u)
    ir, iv = rows_values(i)
    a = pd.DataFrame({"r": ur, "v": uv}).drop_duplicates()
    b = pd.DataFrame({"r": ir, "v": iv}).drop_duplicates()
    m = a.merge(b, on=["r", "v"])
    return np.bincount(m["r"].to_numpy(), minlength=n).astype(np.float32)


def target_encode(keys, y, n_train, fit_mask, seed):
    """Smoothed mean of each label column of y per key, out-of-fold on the fit rows.

    Fit rows see statistics from the other folds only (no leakage of their own label), the
    early-stopping and test rows see statistics from all fit rows. Returns (n, n_labels) float32
    and the log count of the key among fit rows."""
    n, n_labels = len(keys), y.shape[1]
    dense_key, uniq = pd.factorize(keys)
    k = len(uniq)
    fit_rows = np.flatnonzero(fit_mask)
    prior = y[fit_rows].mean(axis=0)
    fold = np.random.default_rng(seed + 2).integers(0, TE_FOLDS, len(fit_rows))
    tot_n = np.bincount(dense_key[fit_rows], minlength=k).astype(np.float64)
    tot_s = np.stack([np.bincount(dense_key[fit_rows], weights=y[fit_rows, j], minlength=k)
                      for j in range(n_labels)], axis=1)
    out = np.empty((n, n_labels), dtype=np.float32)
    cnt = np.empty(n, dtype=np.float32)
    other = np.ones(n, dtype=bool)
    other[fit_rows] = False
    ko = dense_key[other]
    out[other] = (tot_s[ko] + TE_PRIOR * prior) / (tot_n[ko, None] + TE_PRIOR)
    cnt[other] = tot_n[ko]
    for f in range(TE_FOLDS):
        rows = fit_rows[fold == f]
        kr = dense_key[rows]
        f_n = np.bincount(kr, minlength=k).astype(np.float64)
        f_s = np.stack([np.bincount(kr, weights=y[rows, j], minlength=k)
                        for j in range(n_labels)], axis=1)
        s, c = tot_s - f_s, tot_n - f_n
        out[rows] = (s[kr] + TE_PRIOR * prior) / (c[kr, None] + TE_PRIOR)
        # Scale the out-of-fold count up so fit and test rows see counts on the same scale.
        cnt[rows] = c[kr] * TE_FOLDS / (TE_FOLDS - 1)
    return out, np.log1p(cnt)


def _safe(text):
    """LightGBM rejects feature names with JSON punctuation; tokens are free text."""
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(text))


def gbdt_matrix(fields, y_all, n_train, fit_mask, ids_mode, seed):
    """Builds the GBDT design matrix over train+test rows. Returns (DataFrame, categorical names)."""
    n = len(y_all)
    cols, cats = {}, []
    for f in fields:
        if f.kind == "dense":
            cols[f.name] = f.x.astype(np.float32)
        elif f.kind == "categorical":
            if f.is_id and ids_mode != "native":
                continue  # represented by its target encoding below
            # Values never seen in train become missing (NaN): LightGBM sends them the default way.
            seen = np.zeros(f.n_codes, dtype=bool)
            seen[f.codes[:n_train]] = True
            cols[f.name] = np.where(seen[f.codes], f.codes, np.nan).astype(np.float32)
            cats.append(f.name)
        else:
            # Multi: the top tokens (by train frequency) as 0/1 columns plus the number of tokens.
            # A bag of ~1000 hashed tokens is what the LR gets; for trees a few frequent ones suffice.
            in_train = f.rows < n_train
            freq = np.bincount(f.tok[in_train], minlength=f.n_codes)
            for t in np.argsort(-freq)[:TOP_TOKENS]:
                col = np.zeros(n, dtype=np.float32)
                col[f.rows[f.tok == t]] = 1.0
                cols[f"{f.name}={_safe(f.uniq[t])}"] = col
            cols[f"{f.name}#n"] = f.count.astype(np.float32)
    # Value matches between user and item fields with a shared vocabulary.
    for u, i in value_match_pairs(fields):
        cols[f"match_{u.name}~{i.name}"] = overlap_count(u, i, n)
    # Target encodings (all labels, so e.g. an item's click rate can help predict its orders):
    # the ids on their own, and every user x item pair of categorical fields that is not too
    # sparse to estimate (>= 4 fit rows per observed pair on average).
    singles = [f for f in fields if f.kind == "categorical" and (f.is_id or ids_mode == "te-all")]
    pairs = [(u, i) for u in fields for i in fields
             if u.side == "user" and i.side == "item"
             and u.kind == "categorical" and i.kind == "categorical"]
    label_names = [f"y{j}" for j in range(y_all.shape[1])]
    keys = [(f.name, f.codes.astype(np.int64)) for f in singles]
    for u, i in pairs:
        key = u.codes.astype(np.int64) * i.n_codes + i.codes
        if len(np.unique(key[fit_mask])) * 4 <= fit_mask.sum():
            keys.append((f"{u.name}x{i.name}", key))
    for name, key in keys:
        te, lc = target_encode(key, y_all, n_train, fit_mask, seed)
        for j, ln in enumerate(label_names):
            cols[f"te_{name}_{ln}"] = te[:, j]
        cols[f"n_{name}"] = lc
    return pd.DataFrame(cols), cats


def train_gbdt(X, cats, y, fit_idx, valid_idx, seed):
    """LightGBM with early stopping on the held-out requests. The stopping metric is AUC, not
    log-loss: negative bagging (below) shifts the probabilities up, which log-loss would punish
    after a handful of trees although the ranking keeps improving."""
    rate = y[fit_idx].mean()
    params = dict(
        objective="binary", metric="auc", learning_rate=0.08, num_leaves=63, min_data_in_leaf=100,
        feature_fraction=0.8, lambda_l2=10.0, cat_smooth=20.0, min_data_per_group=50,
        max_cat_threshold=64, max_bin=63, num_threads=1, seed=seed, verbose=-1,
        # Rare labels: keep every positive, bag a fraction of negatives per tree. This speeds
        # training up a lot and does not hurt AUC (a ranking metric).
        bagging_freq=1, pos_bagging_fraction=1.0,
        neg_bagging_fraction=min(1.0, max(0.1, 5.0 * rate / (1 - rate))),
    )
    dfit = lgb.Dataset(X.iloc[fit_idx], y[fit_idx], categorical_feature=cats, free_raw_data=False)
    dval = lgb.Dataset(X.iloc[valid_idx], y[valid_idx], reference=dfit)
    # Held-out AUC over a few hundred positives (cart, order) is noisy: give rare labels more
    # patience so one lucky early tree does not end training (trees are cheap there anyway).
    patience = 40 if rate > 0.05 else 100
    booster = lgb.train(params, dfit, num_boost_round=1000, valid_sets=[dval],
                        callbacks=[lgb.early_stopping(patience, verbose=False)])
    return booster


# ----------------------------------------------------------------------------------------------
# Hashed logistic regression


def _mix(x):
    """splitmix64 finalizer on uint64 arrays: spreads structured codes over the hash space."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _entries(f, n):
    """(rows, codes) of a field: one entry per row for single fields, per token for multi."""
    if f.kind == "multi":
        return f.rows, f.tok.astype(np.int64)
    return np.arange(n), f.codes.astype(np.int64)


def hashed_matrix(fields, n, fit_mask):
    """CSR over train+test rows: hashed one-hot of every field (dense as quantile bins) and of
    every user-field x item-field pair, skipping id x id (a pair seen ~once, pure memorisation).
    Columns are then renumbered to those active in some fit row (others can only get weight 0
    from L2), which makes the lbfgs vectors ~3x shorter than the 2^HASH_BITS hash space."""
    mask = np.uint64((1 << HASH_BITS) - 1)
    rows_list, cols_list = [], []

    def add(rows, salt, a, b=None):
        h = np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) + a.astype(np.uint64)
        if b is not None:
            h = _mix(h) ^ (b.astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93))
        rows_list.append(rows.astype(np.int32))
        cols_list.append((_mix(h) & mask).astype(np.int32))

    salt = 1
    for f in fields:
        r, c = _entries(f, n)
        add(r, salt, c)
        salt += 1
    for u in fields:
        for i in fields:
            if u.side != "user" or i.side != "item" or (u.is_id and i.is_id):
                continue
            ur, uc = _entries(u, n)
            ir, ic = _entries(i, n)
            if i.kind != "multi":
                add(ur, salt, uc, ic[ur])
            elif u.kind != "multi":
                add(ir, salt, uc[ir], ic)
            else:  # multi x multi: every token pair within a row
                m = pd.DataFrame({"r": ur, "a": uc}).merge(pd.DataFrame({"r": ir, "b": ic}), on="r")
                add(m["r"].to_numpy(), salt, m["a"].to_numpy(), m["b"].to_numpy())
            salt += 1
    rows = np.concatenate(rows_list)
    cols = np.concatenate(cols_list)
    del rows_list, cols_list
    used = np.unique(cols[fit_mask[rows]])
    remap = np.full(1 << HASH_BITS, -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    cols = remap[cols]
    keep = cols >= 0
    rows, cols = rows[keep], cols[keep]
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n, len(used)))
    X.sum_duplicates()
    X.data[:] = 1.0  # a collision inside one row is still one active feature
    return X


def train_lr(X, y, fit_idx, valid_idx, cs):
    """L2 logistic regression (lbfgs, tol 1e-4: tighter tolerances moved AUC by < 0.0003).

    With several C values each is fitted cold and the best held-out log-loss wins. The default
    is the single C=0.03 because a fit costs ~1 s per lbfgs iteration on 700k rows: on the
    prerank-generated world a 0.01/0.03/0.1 grid picked 0.03 for click (AUC 0.7561/0.7581/
    0.7503) and 0.03-0.1 for order (0.8775/0.8872/0.8879), and the grid would triple the time.
    (Warm-starting along the C path does not help: sklearn scales the objective by 1/n, so the
    old optimum already meets the gradient tolerance at the new C and lbfgs stops at once.)"""
    Xf, Xv, yf, yv = X[fit_idx], X[valid_idx], y[fit_idx], y[valid_idx]
    best = None
    for C in cs:
        m = LogisticRegression(C=C, solver="lbfgs", max_iter=300, tol=1e-4)
        m.fit(Xf, yf)
        if len(cs) == 1:
            return m
        ll = log_loss(yv, m.predict_proba(Xv)[:, 1])
        log(f"    LR C={C}: held-out log-loss {ll:.5f} ({int(m.n_iter_[0])} iterations)")
        if best is None or ll < best[0]:
            best = (ll, m)
    return best[1]


# ----------------------------------------------------------------------------------------------


def auc(y, s):
    # roc_auc_score counts a tied positive/negative pair as 1/2 (average ranks), as the brief asks.
    return roc_auc_score(y, s) if 0 < y.sum() < len(y) else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--max-train-rows", type=int, default=0, help="subsample train (0 = all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ids", choices=["te", "native", "te-all"], default="te",
                    help="high-cardinality categoricals (> %d values) as out-of-fold target "
                         "encodings (te), LightGBM native categoricals (native), or te and "
                         "every categorical also target-encoded (te-all)" % HIGH_CARD)
    ap.add_argument("--lr-c", type=lambda v: [float(c) for c in v.split(",")], default=[0.03],
                    help="inverse L2 strength of the hashed LR; a comma list is searched on the "
                         "held-out requests (one lbfgs fit each, ~1 min per fit per label)")
    ap.add_argument("--skip-lr", action="store_true")
    args = ap.parse_args()

    t0 = time.time()
    features, labels, train, test = load(args.data_dir, args.max_train_rows, args.seed)
    n_train, n = len(train), len(train) + len(test)
    valid_mask = split_valid(train, args.seed)
    fit_idx, valid_idx = np.flatnonzero(~valid_mask), np.flatnonzero(valid_mask)
    test_idx = np.arange(n_train, n)
    fit_mask = np.zeros(n, dtype=bool)
    fit_mask[fit_idx] = True
    y_all = np.concatenate([train[labels].to_numpy(), test[labels].to_numpy()]).astype(np.float64)
    fields = encode_fields(features, train, test)
    t_load = time.time() - t0
    log(f"loaded {n_train} train ({len(fit_idx)} fit / {len(valid_idx)} early-stop) + "
        f"{len(test)} test rows in {t_load:.1f}s; ids: "
        f"{[f.name for f in fields if f.is_id]}")

    t1 = time.time()
    X, cats = gbdt_matrix(fields, y_all, n_train, fit_mask, args.ids, args.seed)
    t_gfeat = time.time() - t1
    log(f"GBDT features: {X.shape[1]} columns ({len(cats)} categorical) in {t_gfeat:.1f}s; "
        f"matches: {[c for c in X.columns if c.startswith('match_')]}")

    results = {}
    for j, label in enumerate(labels):
        y = y_all[:, j]
        r = results[label] = {"pos": int(y[test_idx].sum())}
        t = time.time()
        booster = train_gbdt(X, cats, y, fit_idx, valid_idx, args.seed)
        r["gbdt"] = auc(y[test_idx], booster.predict(X.iloc[test_idx],
                                                     num_iteration=booster.best_iteration))
        r["gbdt_t"], r["gbdt_it"] = time.time() - t, booster.best_iteration
        log(f"  {label}: GBDT AUC {r['gbdt']:.4f} ({r['gbdt_it']} trees, {r['gbdt_t']:.0f}s)")
        truth = f"truth_{label}"
        r["truth"] = auc(y[test_idx], test[truth].to_numpy()) if truth in test else float("nan")
    del X

    t_hfeat = 0.0
    if not args.skip_lr:
        t1 = time.time()
        H = hashed_matrix(fields, n, fit_mask)
        t_hfeat = time.time() - t1
        log(f"hashed LR matrix: {H.shape[1]} columns, {H.nnz / n:.0f} active per row, "
            f"built in {t_hfeat:.1f}s")
        for j, label in enumerate(labels):
            y = y_all[:, j]
            t = time.time()
            m = train_lr(H, y, fit_idx, valid_idx, args.lr_c)
            results[label]["lr"] = auc(y[test_idx], m.predict_proba(H[test_idx])[:, 1])
            results[label]["lr_t"], results[label]["lr_C"] = time.time() - t, m.C
            log(f"  {label}: LR AUC {results[label]['lr']:.4f} ({results[label]['lr_t']:.0f}s)")

    print(f"\n{args.data_dir}: {n_train} train rows ({len(fit_idx)} fit, {len(valid_idx)} "
          f"early-stop), {len(test)} test rows; ids as {args.ids}")
    print("| label | test positives | GBDT AUC | hashed LR AUC | truth AUC | GBDT time (trees) | LR time (C) |")
    print("|---|---|---|---|---|---|---|")
    for label in labels:
        r = results[label]
        lr = f"{r['lr']:.4f}" if "lr" in r else "–"
        lrt = f"{r['lr_t']:.0f}s (C={r['lr_C']})" if "lr_t" in r else "–"
        print(f"| {label} | {r['pos']} | {r['gbdt']:.4f} | {lr} | {r['truth']:.4f} | "
              f"{r['gbdt_t']:.0f}s ({r['gbdt_it']}) | {lrt} |")
    print(f"load {t_load:.0f}s, GBDT features {t_gfeat:.0f}s, LR features {t_hfeat:.0f}s, "
          f"total {time.time() - t0:.0f}s (one core)")


if __name__ == "__main__":
    main()
