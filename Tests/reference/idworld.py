#!/usr/bin/env python3
"""A synthetic progressive world (click -> cart -> order) where the ids carry much of the signal.

Why (issue 13): `prerank generate` and otherworld.py give each user ~100 and each item ~20-40
impressions, and most of their signal is in attribute fields, so id fields there can at best be
harmless. This world is written so that per-user and per-item effects are *strong* and well
observed (defaults: 1,500 users, 3,000 items; ~200 training impressions per user and ~100 per
item at 8,000 requests x 50 candidates), so a model with `user_id` / `item_id` should beat one
without them. It shares no code with the other two generators (numpy only).

Latent structure (every term a product of a user/request-side and an item-side quantity, so a
twin tower can express all of it; the *id-level* parts are visible only through the ids):
  * user click propensity a_u = age-band and city effects + an idiosyncratic part (sd 0.7);
    `active_days` (dense, 15 % empty) is a noisy reveal of the idiosyncratic part;
  * item quality q_i = brand effect + idiosyncratic part (sd 0.7); `rating` (dense, 20 % empty)
    is a noisy reveal of the idiosyncratic part;
  * user x item affinity <p_u, t_i> of rank 4: p_u = city/age vectors + an id-level vector,
    t_i = category vector + an id-level vector, the id-level parts dominating;
  * request context: `page` (home/search/category/deal) with `query_cat` (empty on home pages);
    a candidate in the query category gets a bonus; price sensitivity x price deviation;
  * cart: item cart appeal (half quality, half id-level) and user cart propensity (id-level);
  * order: user buyer propensity (device effect + id-level), item conversion (id-level) and
    price sensitivity.
Labels are progressive (order => cart => click), drawn from the stage probabilities.

Files (SPEC §3): features.yaml, items.csv, train.csv, test.csv (both with `truth_<label>`, the
true marginal probability), and truth.json: test AUC of the truth and of an *attribute-only
oracle* (the same logits with every id-level part replaced by its population expectation given
the observable fields), a rough measure of how much of the label only the ids can tell. It is a
reference, not an upper bound for id-free models: it ignores the realised per-brand / per-city
means of the id-level parts (a finite catalog has them; a model of the brand field learns them)
and what `query_cat` says about the user's id-level taste (intents are drawn from it); LightGBM
without ids reaches click AUC 0.771 where it has 0.751 (docs/RESULTS.md, world 3). Ranking by
E[z] rather than E[P] moves it by < 0.003 (a 400-draw Monte Carlo E[P] gave 0.754).

Usage: python3 Tests/reference/idworld.py --out DIR [--seed 1] [--requests 20000]
           [--candidates 40] [--users 1500] [--items 3000]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

# The generator-independent helpers (calibration by bisection, AUC, primes) are otherworld.py's;
# the world itself — entities, id effects, logits — is this file's own.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from otherworld import auc, calibrate as calibrate_to, next_prime, sigmoid  # noqa: E402

RANK = 4
TEST_FRACTION = 0.2
TARGETS = {"click": 0.10, "cart": 0.02, "order": 0.006}     # P(click), P(click, cart), P(click, cart, order)
CALIBRATION_REQUESTS = 3000
CHUNK_ROWS = 50_000
PAGES = ["home", "search", "category", "deal"]
PAGE_SHARES = [0.35, 0.35, 0.2, 0.1]
PAGE_CLICK = [-0.3, 0.4, 0.2, 0.0]        # per-request offsets (the query page clicks more)
DEVICES = ["ios", "android", "web"]
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
SD_ID = 0.7           # idiosyncratic (id-level) sd of user propensity and item quality
SD_REVEAL = 0.8       # noise sd of active_days / rating around the idiosyncratic part


def shrink(noisy, present):
    """E[idio | noisy reveal] for idio ~ N(0, SD_ID²), noisy = idio + N(0, SD_REVEAL²); 0 if absent."""
    k = SD_ID ** 2 / (SD_ID ** 2 + SD_REVEAL ** 2)
    return np.where(present, k * noisy, 0.0)


class World:
    def __init__(self, rng, n_users, n_items):
        U, I = n_users, n_items
        C = self.n_cat = min(30, I)
        B = max(C, I // 12)                                       # brands
        ncity = 25
        # ---- categories, brands
        self.cat_vec = rng.normal(0, 0.5, (C, RANK))
        self.cat_logprice = rng.uniform(np.log(8), np.log(300), C)
        self.cat_pop = np.exp(rng.normal(0, 0.5, C))
        self.brand_cat = rng.integers(0, C, B)
        self.brand_q = rng.normal(0, 0.35, B)
        # ---- users: observable age band, city, device; latent propensities
        self.age = rng.choice(len(AGE_BANDS), U, p=[0.15, 0.3, 0.25, 0.15, 0.1, 0.05])
        city_w = np.exp(rng.normal(0, 0.7, ncity))
        self.city = rng.choice(ncity, U, p=city_w / city_w.sum())
        self.device = rng.choice(len(DEVICES), U, p=[0.4, 0.45, 0.15])
        age_click = rng.normal(0, 0.25, len(AGE_BANDS))
        city_click = rng.normal(0, 0.2, ncity)
        self.a_attr = age_click[self.age] + city_click[self.city]
        self.a_id = rng.normal(0, SD_ID, U)
        city_vec = rng.normal(0, 0.35, (ncity, RANK))
        age_vec = rng.normal(0, 0.3, (len(AGE_BANDS), RANK))
        self.p_attr = city_vec[self.city] + age_vec[self.age]
        self.p_id = rng.normal(0, 0.7, (U, RANK))
        age_ps = np.linspace(0.8, -0.2, len(AGE_BANDS))            # the young are price sensitive
        self.ps = age_ps[self.age] + rng.normal(0, 0.3, U)         # attribute-revealed mostly
        self.ps_attr = age_ps[self.age]
        self.cart_u = rng.normal(0, 0.6, U)                        # id-level only
        dev_buy = np.array([0.3, -0.1, -0.3])
        self.buy_attr = dev_buy[self.device]
        self.buy_id = rng.normal(0, 0.6, U)
        self.activity = np.exp(rng.normal(0, 0.8, U))              # request rate
        noisy = self.a_id + rng.normal(0, SD_REVEAL, U)
        self.active_present = rng.random(U) >= 0.15
        self.active_days = np.where(self.active_present, np.round(np.exp(2.5 + 0.6 * noisy), 0), np.nan)
        self.a_post = self.a_attr + shrink(noisy, self.active_present)
        self.user_id = np.array([f"usr-{v:05d}" for v in rng.permutation(90000)[:U] + 10000], dtype=object)
        # taste: preferred categories (for drawing request intents)
        self.cat_pref = self.p_attr @ self.cat_vec.T + self.p_id @ self.cat_vec.T

        # ---- items: category (from brand), brand, price, rating; latents
        self.brand = rng.integers(0, B, I)
        self.cat = np.where(rng.random(I) < 0.85, self.brand_cat[self.brand], rng.integers(0, C, I))
        self.cat[:C] = np.arange(C)                                # every category has an item
        self.q_attr = self.brand_q[self.brand]
        self.q_id = rng.normal(0, SD_ID, I)
        self.q = self.q_attr + self.q_id
        noisy = self.q_id + rng.normal(0, SD_REVEAL, I)
        self.rating_present = rng.random(I) >= 0.2
        self.rating = np.where(self.rating_present, np.clip(np.round(4.0 + 0.45 * noisy, 1), 1.0, 5.0), np.nan)
        # the clipped, rounded value is what the model sees; the oracle uses the unclipped reveal
        self.q_post = self.q_attr + shrink(noisy, self.rating_present)
        self.t_attr = self.cat_vec[self.cat]
        self.t_id = rng.normal(0, 0.7, (I, RANK))
        self.log_price = self.cat_logprice[self.cat] + rng.normal(0, 0.5, I)
        self.price_dev = self.log_price - self.cat_logprice[self.cat]
        self.cart_i_id = rng.normal(0, 0.5, I)
        self.conv_i = rng.normal(0, 0.5, I)                        # id-level only
        self.pop = np.exp(0.3 * self.q + rng.normal(0, 0.8, I))
        self.item_id = rng.permutation(900000)[:I] + 7_000_000
        self.brand_name = np.array([f"b{v:04d}" for v in range(B)], dtype=object)
        self.cat_name = np.array([f"cat_{chr(97 + v % 26)}{v // 26}" for v in range(C)], dtype=object)
        # per-category item lists, popularity-weighted draws
        self.by_cat = [np.flatnonzero(self.cat == c) for c in range(C)]
        self.by_cat_p = [self.pop[ix] / self.pop[ix].sum() for ix in self.by_cat]

    def requests(self, rng, n, k):
        U, I, C = len(self.user_id), len(self.item_id), self.n_cat
        user = rng.choice(U, n, p=self.activity / self.activity.sum())
        page = rng.choice(len(PAGES), n, p=PAGE_SHARES)
        logits = np.log(self.cat_pop)[None, :] + self.cat_pref[user]
        intent = np.argmax(logits + rng.gumbel(size=(n, C)), axis=1)
        share = np.where(page == 0, 0.3, 0.6)                    # home pages are broader
        cand = np.empty((n, k), dtype=np.int64)
        allp = self.pop / self.pop.sum()
        for r in range(n):
            m = min(int(rng.binomial(k, share[r])), len(self.by_cat[intent[r]]))
            a = rng.choice(self.by_cat[intent[r]], m, replace=False, p=self.by_cat_p[intent[r]])
            rest = rng.choice(I, k + m + 8, p=allp)
            rest = rest[~np.isin(rest, a)]
            _, first = np.unique(rest, return_index=True)
            rest = rest[np.sort(first)][:k - m]
            while len(rest) < k - m:                            # tiny catalogs only
                extra = np.setdiff1d(np.arange(I), np.concatenate([a, rest]))
                rest = np.concatenate([rest, rng.choice(extra, k - m - len(rest), replace=False)])
            cand[r] = np.concatenate([a, rest])
        return dict(user=user, page=page, intent=intent, cand=cand)

    def logits(self, req, oracle=False):
        """Stage logits without intercepts, (n, k) each. oracle=True: the attribute-only oracle,
        every id-level part replaced by its expectation given the observable fields."""
        u, cand, page = req["user"], req["cand"], req["page"]
        if oracle:
            a, q = self.a_post[u], self.q_post[cand]
            p, t = self.p_attr[u], self.t_attr[cand]
            ps = self.ps_attr[u]
            cart_u, cart_i, buy, conv = 0 * a, 0.5 * q, self.buy_attr[u], 0 * q
        else:
            a, q = self.a_attr[u] + self.a_id[u], self.q[cand]
            p, t = self.p_attr[u] + self.p_id[u], self.t_attr[cand] + self.t_id[cand]
            ps = self.ps[u]
            cart_u, cart_i = self.cart_u[u], 0.5 * q + self.cart_i_id[cand]
            buy, conv = self.buy_attr[u] + self.buy_id[u], self.conv_i[cand]
        aff = np.einsum("nr,nkr->nk", p, t)
        # the query category is visible on search/category/deal pages only; on home pages the
        # intent still shapes the candidates but gives no bonus
        same = (self.cat[cand] == req["intent"][:, None]) & (page != 0)[:, None]
        x = self.price_dev[cand]
        z_click = (col(a) + q + 0.8 * aff + 1.0 * same + col(np.array(PAGE_CLICK)[page])
                   - 0.4 * col(ps) * x)
        z_cart = 0.8 * cart_i + col(0.8 * cart_u) + 0.4 * aff + 0.3 * same - 0.8 * col(ps) * x
        z_order = col(0.9 * buy) + 0.8 * conv + 0.3 * q - 0.6 * col(ps) * x
        return z_click, z_cart, z_order


def col(v):
    return np.asarray(v, dtype=float)[:, None]


def calibrate(z):
    """Intercepts so the mean P(click), P(click, cart), P(click, cart, order) hit TARGETS."""
    return calibrate_to(z, TARGETS)


def marginals(b, z):
    s = [sigmoid(bi + zi) for bi, zi in zip(b, z)]
    return s, [s[0], s[0] * s[1], s[0] * s[1] * s[2]]


def fmt_dense(v, digits):
    return "" if np.isnan(v) else (f"{v:.{digits}f}" if digits else str(int(v)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--items", type=int, default=3000)
    a = ap.parse_args(argv)
    for name in ("requests", "candidates", "users", "items"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if a.candidates > a.items:
        ap.error("--candidates must not exceed --items")
    t0 = time.time()
    world_rng, calib_rng, req_rng, label_rng, split_rng = [
        np.random.default_rng(s) for s in np.random.SeedSequence([a.seed, 13013]).spawn(5)]
    w = World(world_rng, a.users, a.items)
    b = calibrate(w.logits(w.requests(calib_rng, CALIBRATION_REQUESTS, a.candidates)))
    R, K = a.requests, a.candidates
    req = w.requests(req_rng, R, K)
    stages, truths = marginals(b, w.logits(req))
    # the oracle's intercepts are calibrated the same way, so its probabilities are comparable
    z_or = w.logits(req, oracle=True)
    _, oracle = marginals(calibrate(z_or), z_or)
    uni = label_rng.random((3, R, K))
    click = uni[0] < stages[0]
    cart = click & (uni[1] < stages[1])
    order = cart & (uni[2] < stages[2])
    is_test = split_rng.random(R) < TEST_FRACTION
    labels = ["click", "cart", "order"]

    os.makedirs(a.out, exist_ok=True)
    command = "idworld.py " + " ".join(f"--{k} {getattr(a, k)}" for k in ("seed", "requests", "candidates", "users", "items"))
    feats = [  # name, side, kind, buckets, dim
        ("user_id", "user", "categorical", next_prime(max(10 * a.users, 10007)), 16),
        ("age_band", "user", "categorical", 17, 4),
        ("city", "user", "categorical", 101, 8),
        ("device", "user", "categorical", 11, 4),
        ("active_days", "user", "dense", None, None),
        ("page", "user", "categorical", 13, 4),
        ("query_cat", "user", "categorical", 127, 8),
        ("item_id", "item", "categorical", next_prime(max(10 * a.items, 10007)), 16),
        ("category", "item", "categorical", 127, 8),
        ("brand", "item", "categorical", next_prime(4 * len(w.brand_name)), 8),
        ("price", "item", "dense", None, None),
        ("rating", "item", "dense", None, None),
    ]
    with open(os.path.join(a.out, "features.yaml"), "w") as f:
        f.write(f"# written by {command} (Tests/reference/idworld.py: strong per-id effects)\n")
        f.write("tasks:\n  - {name: ctr, label: click}\n  - {name: atcr, label: cart}\n  - {name: ctcvr, label: order}\n")
        f.write("features:\n")
        for name, side, kind, buckets, dim in feats:
            extra = f", buckets: {buckets}, dim: {dim}" if buckets else ""
            f.write(f"  - {{name: {name}, side: {side}, kind: {kind}{extra}}}\n")

    I = len(w.item_id)
    price = np.round(np.exp(w.log_price), 2)
    item_frag = np.array([f"{w.item_id[i]},{w.cat_name[w.cat[i]]},{w.brand_name[w.brand[i]]},{price[i]:.2f},"
                          f"{fmt_dense(w.rating[i], 1)}" for i in range(I)], dtype=object)
    with open(os.path.join(a.out, "items.csv"), "w") as f:
        f.write("item_id,category,brand,price,rating\n")
        f.write("".join(s + "\n" for s in item_frag))
    request_id = 50_000_000 + 7 * np.arange(R)
    u, page, intent = req["user"], req["page"], req["intent"]
    req_frag = np.array([
        f"{request_id[r]},{w.user_id[u[r]]},{AGE_BANDS[w.age[u[r]]]},c{w.city[u[r]]:02d},{DEVICES[w.device[u[r]]]},"
        f"{fmt_dense(w.active_days[u[r]], 0)},{PAGES[page[r]]},{'' if page[r] == 0 else w.cat_name[intent[r]]}"
        for r in range(R)], dtype=object)
    label_text = np.array(["0,0,0", "1,0,0", "1,1,0", "1,1,1"])
    depth = click.astype(np.int8) + cart + order
    header = ("request_id,user_id,age_band,city,device,active_days,page,query_cat,"
              "item_id,category,brand,price,rating,click,cart,order,truth_click,truth_cart,truth_order\n")
    step = max(1, CHUNK_ROWS // K)
    with open(os.path.join(a.out, "train.csv"), "w") as ftr, open(os.path.join(a.out, "test.csv"), "w") as fte:
        ftr.write(header)
        fte.write(header)
        for lo in range(0, R, step):
            block = np.arange(lo, min(lo + step, R))
            for fh, sel in ((ftr, block[~is_test[block]]), (fte, block[is_test[block]])):
                if len(sel) == 0:
                    continue
                cols = [np.repeat(req_frag[sel], K), item_frag[req["cand"][sel].ravel()], label_text[depth[sel].ravel()]]
                cols += [[f"{v:.6g}" for v in t[sel].ravel().tolist()] for t in truths]
                fh.write("".join(",".join(row) + "\n" for row in zip(*cols)))

    test_rows = np.repeat(is_test, K).reshape(R, K)
    observed = dict(click=click, cart=cart, order=order)
    summary = {"command": command, "rows": R * K, "test_rows": int(test_rows.sum()),
               "rates": {l: float(observed[l].mean()) for l in labels},
               "test_positives": {l: int(observed[l][test_rows].sum()) for l in labels},
               "truth_auc": {l: auc(t[test_rows], observed[l][test_rows]) for l, t in zip(labels, truths)},
               "attribute_oracle_auc": {l: auc(t[test_rows], observed[l][test_rows]) for l, t in zip(labels, oracle)},
               "train_impressions_per_user": float((~test_rows).sum() / len(np.unique(u[~is_test]))),
               "train_impressions_per_item": float((~test_rows).sum() / len(np.unique(req["cand"][~is_test])))}
    with open(os.path.join(a.out, "truth.json"), "w") as f:
        json.dump(summary, f, indent=1)
    say = lambda m: print(f"idworld: {m}", file=sys.stderr)
    say(f"rows {R * K} (test {summary['test_rows']}), label rates " +
        ", ".join(f"{l} {100 * v:.2f}%" for l, v in summary["rates"].items()))
    say("test AUC truth " + ", ".join(f"{l} {v:.4f}" for l, v in summary["truth_auc"].items() if v is not None))
    say("test AUC attribute-only oracle " + ", ".join(f"{l} {v:.4f}" for l, v in summary["attribute_oracle_auc"].items() if v is not None))
    say(f"train impressions per user {summary['train_impressions_per_user']:.0f}, per item "
        f"{summary['train_impressions_per_item']:.0f}; {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
