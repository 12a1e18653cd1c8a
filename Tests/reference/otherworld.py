#!/usr/bin/env python3
"""An independent synthetic progressive world (click -> cart -> order) for prerank.

Why: `prerank generate` (docs/GENERATOR.md) produces the worlds prerank is developed against. A
trainer tuned on those can quietly depend on their quirks: field names, column order, feature mix,
features.yaml layout, an additive latent structure. This generator shares no code and little design
with it, so `prerank train` / `eval` on its files checks that they generalise:

  * other field names and kinds: user side `uid` (hashed-looking hex id), `tier`, `country`,
    `tenure_days` (dense, sometimes empty), `intent_words` (multi, sometimes empty),
    `intent_cat` (integer values); item side `item_id`, `sku_cat` (integer values), `seller`,
    `tags` (multi, sometimes empty), `log_price`, `stars` (dense, sometimes empty);
  * features.yaml in block style, `features` before `tasks`, user and item fields interleaved;
  * train/test columns in an unusual order (labels first, item fields before user fields, truths
    last) plus `session_hour`, a column that is not a feature and must be ignored;
  * a different latent structure: user taste is a *saturating* (tanh) function of tier, country
    and tenure; a request adds a query-intent vector; items are category + seller + tag vectors;
    stage-specific terms: a cart-only user x tag affinity, and for orders a domestic-seller bonus
    (user country == seller's hidden home country) and an "express" query x seller reliability.

Every structured term is a product of a user/query-side function and an item-side function of
observable fields, so a twin-tower model can learn it; id-level parts are learnable only through
`uid` / `item_id`. The world (and hence the labels) does not depend on --tasks: with --tasks 2
the cart stage still happens but its label is not written (order => click still holds).

Usage: python3 Tests/reference/otherworld.py --out DIR [--seed 1] [--requests 20000]
           [--candidates 40] [--users 4000] [--items 15000] [--tasks 3]
"""
import argparse
import os
import sys
import time

import numpy as np

LATENT = 6          # width of the shared user/item taste vectors
CART_LATENT = 3     # width of the cart-only affinity vectors
TEST_FRACTION = 0.2
TARGETS = {"click": 0.08, "cart": 0.01, "order": 0.0025}   # P(click), P(click, cart), P(click, cart, order)
CALIBRATION_REQUESTS = 4000
CHUNK_ROWS = 50_000

TIERS = ["free", "plus", "pro", "biz"]
TIER_SHARES = [0.55, 0.25, 0.13, 0.07]
COUNTRIES = ["BR", "ID", "MY", "PH", "SG", "TH", "TW", "VN", "MX", "CO"]
# Query modifiers (request-level flags that change the stage logits) and the word that shows each
# in intent_words: the only way a model can see them.
MODIFIER_WORDS = {"cheap": "bargain", "premium": "luxe", "gift": "giftfor", "express": "express"}
GLOBAL_TAGS = ["eco", "bundle", "handmade", "imported", "clearance", "giftable", "refurb", "limited"]
SYLLABLES = ["ka", "lo", "mi", "ru", "te", "zo", "pa", "ne", "vi", "su", "do", "ha", "ji", "fe", "bu", "ro", "ya", "gi", "wo", "ce"]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def next_prime(n):
    n = max(n, 2)
    while any(n % d == 0 for d in range(2, int(n ** 0.5) + 1)):
        n += 1
    return n


def fnv1a_bucket(field, value, buckets):
    """SPEC §3 hash: FNV-1a 64 of UTF-8 `field + "\\x1f" + value`, modulo buckets."""
    h = 14695981039346656037
    for byte in f"{field}\x1f{value}".encode():
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % buckets


def pseudo_words(rng, n):
    """n distinct three-syllable words (no `|` or `,`, so they are safe in multi-valued cells)."""
    codes = rng.choice(len(SYLLABLES) ** 3, size=n, replace=False)
    s = len(SYLLABLES)
    return [SYLLABLES[c // (s * s)] + SYLLABLES[(c // s) % s] + SYLLABLES[c % s] for c in codes]


class GroupedSampler:
    """Popularity-weighted draws of a member of a given group (items of a category, sellers of a
    department), vectorised: one cumulative-weight array over members sorted by group, then a
    searchsorted inside the group's slice. Every requested group must have a member."""

    def __init__(self, groups, weights, n_groups):
        self.order = np.argsort(groups, kind="stable")
        self.cum = np.cumsum(weights[self.order])
        counts = np.bincount(groups, minlength=n_groups)
        self.end = np.cumsum(counts)
        self.start = self.end - counts
        self.base = np.where(self.start > 0, self.cum[np.maximum(self.start - 1, 0)], 0.0)
        self.total = self.cum[np.maximum(self.end - 1, 0)] - self.base

    def draw(self, rng, groups):
        target = self.base[groups] + rng.random(groups.shape) * self.total[groups]
        pos = np.searchsorted(self.cum, target, side="right")
        # float rounding can land one past the slice: clamp into the group
        return self.order[np.clip(pos, self.start[groups], self.end[groups] - 1)]


def later_duplicates(cand):
    """Mask of entries equal to an earlier entry of the same row."""
    order = np.argsort(cand, axis=1, kind="stable")
    s = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros(cand.shape, dtype=bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    mask = np.zeros(cand.shape, dtype=bool)
    np.put_along_axis(mask, order, dup_sorted, axis=1)
    return mask


class World:
    """Users, sellers, categories and items with their observable fields and hidden latents."""

    def __init__(self, rng, n_users, n_items):
        self.n_cat = min(48, n_items)
        self.n_dept = min(8, self.n_cat)
        C, D, L = self.n_cat, self.n_dept, LATENT

        # --- categories and departments: category vectors cluster by department
        self.cat_dept = np.arange(C) % D
        dept_vec = rng.normal(0, 0.6, (D, L))
        self.cat_vec = dept_vec[self.cat_dept] + rng.normal(0, 0.4, (C, L))
        self.cat_pop = np.exp(rng.normal(0, 0.6, C))
        self.cat_logprice = rng.uniform(np.log(5), np.log(500), C)
        self.cat_code = 4100 + 13 * np.arange(C)                # sku_cat values (integers)
        self.intent_code = 700 + 7 * rng.permutation(C)         # intent_cat values: unrelated integers
        words = pseudo_words(rng, 5 * C + 2 * D)
        self.cat_words = np.array(words[:5 * C], dtype=object).reshape(C, 5)
        self.dept_words = np.array(words[5 * C:], dtype=object).reshape(D, 2)

        # --- tags: 12 per department plus global ones; cart-only affinity vectors
        tag_names = [f"{w}{d}" for d in range(D) for w in pseudo_words(rng, 12)] + GLOBAL_TAGS
        self.tag_names = np.array(tag_names, dtype=object)
        n_tags = len(tag_names)
        self.tag_vec = rng.normal(0, 0.5, (n_tags, L))
        self.tag_cart = rng.normal(0, 0.6, (n_tags, CART_LATENT))
        giftable = GLOBAL_TAGS.index("giftable") + 12 * D

        # --- sellers: a department, a hidden home country, quality, price tier, reliability
        S = max(D, n_items // 25)
        seller_dept = np.concatenate([np.arange(D), rng.integers(0, D, S - D)])
        self.seller_home = rng.integers(0, len(COUNTRIES), S)
        seller_vec = rng.normal(0, 0.4, (S, L))
        seller_quality = rng.normal(0, 1, S)
        seller_pricetier = rng.normal(0, 1, S)
        self.seller_reliability = rng.normal(0, 0.5, S)
        seller_pop = np.exp(rng.normal(0, 1, S))
        self.seller_name = np.array([f"m{j:05d}x{c}" for j, c in enumerate(rng.integers(0, 10, S))], dtype=object)

        # --- items: category by popularity (the first C cover every category), seller mostly
        # from the category's department, tags from the department's pool plus global tags
        I = n_items
        cat = np.concatenate([np.arange(C), rng.choice(C, I - C, p=self.cat_pop / self.cat_pop.sum())])
        dept = self.cat_dept[cat]
        in_dept = GroupedSampler(seller_dept, seller_pop, D).draw(rng, dept)
        anywhere = rng.choice(S, I, p=seller_pop / seller_pop.sum())
        seller = np.where(rng.random(I) < 0.85, in_dept, anywhere)
        n_dept_tags = rng.binomial(3, 0.5, I)                   # 0..3 department tags
        tag_idx = dept[:, None] * 12 + rng.integers(0, 12, (I, 3))
        tag_on = np.arange(3)[None, :] < n_dept_tags[:, None]
        global_on = rng.random((I, len(GLOBAL_TAGS))) < 0.06
        tag_mask = np.zeros((I, n_tags), dtype=bool)
        tag_mask[np.repeat(np.arange(I), 3)[tag_on.ravel()], tag_idx.ravel()[tag_on.ravel()]] = True
        tag_mask[:, 12 * D:] |= global_on
        n_item_tags = np.maximum(tag_mask.sum(1), 1)[:, None]

        def mean_tag(table):
            """Mean of the item's tag rows; zero for an item without tags."""
            return (tag_mask @ table) / n_item_tags

        self.item_cat, self.item_seller = cat, seller
        self.item_dept = dept
        self.item_vec = (self.cat_vec[cat] + 0.6 * seller_vec[seller] + 0.5 * mean_tag(self.tag_vec)
                         + rng.normal(0, 0.25, (I, L)))
        self.item_cart = mean_tag(self.tag_cart) + 0.5 * rng.normal(0, 0.6, (D, CART_LATENT))[dept]
        self.item_giftable = tag_mask[:, giftable].astype(float)
        self.log_price = self.cat_logprice[cat] + 0.4 * seller_pricetier[seller] + rng.normal(0, 0.3, I)
        self.price_dev = self.log_price - self.cat_logprice[cat]                 # relative to the category
        self.quality = 0.6 * seller_quality[seller] + rng.normal(0, 0.6, I)
        stars = np.clip(np.round(4.1 + 0.6 * self.quality + rng.normal(0, 0.25, I), 1), 1.0, 5.0)
        stars_missing = rng.random(I) < 0.06                                      # unrated new items
        self.click_appeal = rng.normal(0, 0.3, I)                                 # id-level
        self.item_pop = np.exp(rng.normal(0, 0.8, I))
        self.item_id = 5_000_000 + 7 * np.arange(I)
        self.item_tags = ["|".join(self.tag_names[np.flatnonzero(row)]) for row in tag_mask]
        self.stars_text = np.where(stars_missing, "", np.char.mod("%.1f", stars))

        # --- users: taste saturates (tanh) in tier + country + tenure, plus an id-level part
        U = n_users
        self.user_tier = rng.choice(len(TIERS), U, p=TIER_SHARES)
        country_share = np.exp(rng.normal(0, 0.7, len(COUNTRIES)))
        self.user_country = rng.choice(len(COUNTRIES), U, p=country_share / country_share.sum())
        tenure = np.minimum(np.floor(np.exp(rng.normal(5.0, 1.2, U))), 4000)
        tenure_missing = rng.random(U) < 0.03                                     # guest checkouts
        self.tenure_text = np.where(tenure_missing, "", tenure.astype(np.int64).astype(str))
        s = (np.log1p(tenure) - 5.0) / 1.2                                        # standardised tenure
        tier_vec = rng.normal(0, 0.5, (len(TIERS), L))
        country_vec = rng.normal(0, 0.6, (len(COUNTRIES), L))
        tenure_vec = rng.normal(0, 0.4, L)
        self.user_vec = (1.2 * np.tanh(tier_vec[self.user_tier] + country_vec[self.user_country] + s[:, None] * tenure_vec)
                         + rng.normal(0, 0.25, (U, L)))
        country_income = rng.normal(0, 0.15, len(COUNTRIES))
        self.price_sens = (np.array([1.0, 0.7, 0.45, 0.25])[self.user_tier] + country_income[self.user_country]
                           - 0.08 * s + rng.normal(0, 0.15, U))
        self.user_cart = (rng.normal(0, 0.6, (len(TIERS), CART_LATENT))[self.user_tier]
                          + 0.4 * s[:, None] * rng.normal(0, 0.6, CART_LATENT) + rng.normal(0, 0.2, (U, CART_LATENT)))
        self.clickiness = rng.normal(0, 0.3, U)                                   # id-level
        self.buyer = 0.3 * s + rng.normal(0, 0.3, U)                              # tenure -> trust, id-level rest
        self.activity = np.exp(rng.normal(0, 0.7, U))
        # uid: a bijection of the index (odd multiplier mod 2^48), so ids look hashed and are unique
        self.uid = np.array([f"{((i + 1) * 0x9E3779B97F4B) % (1 << 48):012x}" for i in range(U)], dtype=object)

        self.item_by_cat = GroupedSampler(cat, self.item_pop, C)
        self.item_by_dept = GroupedSampler(dept, self.item_pop, D)
        self.item_p = self.item_pop / self.item_pop.sum()

    # ------------------------------------------------------------------ requests and impressions
    def requests(self, rng, n, k):
        """n requests of k distinct candidates: user, intent category, modifiers, candidates."""
        C, I = self.n_cat, len(self.item_id)
        user = rng.choice(len(self.uid), n, p=self.activity / self.activity.sum())
        # intent follows the user's taste: P(c | u) ∝ pop_c · exp(0.8 <p_u, e_c>), via Gumbel-max
        logits = np.log(self.cat_pop)[None, :] + 0.8 * self.user_vec[user] @ self.cat_vec.T
        intent = np.argmax(logits + rng.gumbel(size=(n, C)), axis=1)
        ps = self.price_sens[user]
        cheap = rng.random(n) < np.clip(0.05 + 0.15 * ps, 0, 0.4)
        premium = ~cheap & (rng.random(n) < 0.03 + 0.04 * self.user_tier[user])
        gift = rng.random(n) < 0.07
        express = rng.random(n) < 0.06
        # 8 % are home-feed requests: an intent category but no words; modifiers act only where
        # their word is visible, so these get none
        browse = rng.random(n) < 0.08
        flags = {name: f & ~browse for name, f in
                 (("cheap", cheap), ("premium", premium), ("gift", gift), ("express", express))}
        # query words: 1-2 of the intent category's five words, 40 % a department word, modifier words
        first = rng.integers(0, 5, n)
        second = np.where(rng.random(n) < 0.5, (first + 1 + rng.integers(0, 4, n)) % 5, -1)
        dept_word = np.where(rng.random(n) < 0.4, rng.integers(0, 2, n), -1)
        words = []
        for r in range(n):
            if browse[r]:
                words.append("")
                continue
            w = [self.cat_words[intent[r], first[r]]]
            if second[r] >= 0:
                w.append(self.cat_words[intent[r], second[r]])
            if dept_word[r] >= 0:
                w.append(self.dept_words[self.cat_dept[intent[r]], dept_word[r]])
            w += [MODIFIER_WORDS[name] for name, f in flags.items() if f[r]]
            words.append("|".join(w))

        # candidates: 70 % the intent category, 12 % its department, 18 % the whole catalog
        src = rng.random((n, k))
        in_cat = self.item_by_cat.draw(rng, np.repeat(intent, k).reshape(n, k))
        in_dept = self.item_by_dept.draw(rng, np.repeat(self.cat_dept[intent], k).reshape(n, k))
        anywhere = rng.choice(I, (n, k), p=self.item_p)
        cand = np.where(src < 0.70, in_cat, np.where(src < 0.82, in_dept, anywhere))
        for _ in range(20):
            dup = later_duplicates(cand)
            if not dup.any():
                break
            cand[dup] = rng.choice(I, int(dup.sum()), p=self.item_p)
        for r in np.flatnonzero(later_duplicates(cand).any(axis=1)):   # tiny catalogs only
            dup = later_duplicates(cand[r:r + 1])[0]
            free = np.setdiff1d(np.arange(I), cand[r, ~dup])
            cand[r, dup] = rng.choice(free, int(dup.sum()), replace=False)
        return dict(user=user, intent=intent, words=words, cand=cand, **flags)

    def logits(self, req):
        """Stage logits without intercepts, shape (n, k) each: click, cart | click, order | cart."""
        u, it, cand = req["user"], req["intent"], req["cand"]
        query_vec = self.user_vec[u] + 0.7 * self.cat_vec[it]                     # user taste + intent
        taste = np.einsum("nl,nkl->nk", query_vec, self.item_vec[cand])
        same_cat = (self.item_cat[cand] == it[:, None]).astype(float)
        same_dept = (self.item_dept[cand] == self.cat_dept[it][:, None]).astype(float) - same_cat
        ps = col(self.price_sens[u] + 0.6 * req["cheap"] - 0.5 * req["premium"])
        x, q = self.price_dev[cand], self.quality[cand]
        cart_aff = np.einsum("nc,nkc->nk", self.user_cart[u], self.item_cart[cand])
        domestic = (self.seller_home[self.item_seller[cand]] == self.user_country[u][:, None]).astype(float)
        z_click = (0.6 * taste + 1.3 * same_cat + 0.5 * same_dept - 0.5 * ps * x + 0.2 * q
                   + 0.3 * col(req["gift"]) * self.item_giftable[cand] + self.click_appeal[cand] + col(self.clickiness[u]))
        z_cart = (0.35 * taste + 0.5 * same_cat - 1.0 * ps * x + 0.6 * q + 0.4 * col(req["premium"]) * q
                  + 0.8 * cart_aff + 0.6 * col(req["gift"]) * self.item_giftable[cand])
        z_order = (0.2 * taste - 1.6 * ps * x - 0.3 * (self.log_price[cand] - 3.5) + 0.25 * q + 0.9 * domestic
                   + 0.6 * col(req["express"]) * self.seller_reliability[self.item_seller[cand]] + col(self.buyer[u]))
        return z_click, z_cart, z_order


def col(a):
    """A per-request vector as an (n, 1) float column, to broadcast over the candidates."""
    return a[:, None].astype(float)


def bisect(f, target, lo=-20.0, hi=20.0, steps=60):
    """Root of the increasing function f(b) = target."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def calibrate(z, targets=TARGETS):
    """Intercepts so that mean P(click), P(click, cart), P(click, cart, order) hit `targets`; each
    mean is increasing in its own intercept given the earlier ones, so solve them in turn.
    (idworld.py calibrates its own logits with its own targets through this function.)"""
    z1, z2, z3 = z
    b1 = bisect(lambda b: sigmoid(b + z1).mean(), targets["click"])
    p1 = sigmoid(b1 + z1)
    b2 = bisect(lambda b: (p1 * sigmoid(b + z2)).mean(), targets["cart"])
    p12 = p1 * sigmoid(b2 + z2)
    b3 = bisect(lambda b: (p12 * sigmoid(b + z3)).mean(), targets["order"])
    return b1, b2, b3


def auc(scores, labels):
    """Rank-sum AUC, tied scores share their average rank; None without both classes."""
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0        # 1-based average rank of each distinct value
    rank_sum = avg_rank[inverse][labels].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def bucket_spec(name, side, kind, values):
    """Buckets: the first prime >= 3x the vocabulary. For tiny vocabularies (<= 16 values) the
    first such prime without a hash collision, so e.g. two tiers never share an embedding row:
    there a collision would erase a designed effect. Larger vocabularies collide as real hashed
    fields do (a collision-free prime for 48 categories would need ~10-20x the cardinality)."""
    buckets = next_prime(3 * len(values))
    while len(values) <= 16 and len({fnv1a_bucket(name, v, buckets) for v in values}) < len(values):
        buckets = next_prime(buckets + 1)
    return dict(name=name, side=side, kind=kind, buckets=buckets, dim=16 if len(values) > 100 else 8)


def features_yaml(world, tasks, command):
    """Block-style YAML, `features` before `tasks`, user and item fields interleaved (all legal per
    SPEC §3: a tower concatenates its own side's fields in spec order)."""
    vocab = list(world.cat_words.ravel()) + list(world.dept_words.ravel()) + list(MODIFIER_WORDS.values())
    feats = [
        bucket_spec("sku_cat", "item", "categorical", world.cat_code.tolist()),
        bucket_spec("uid", "user", "categorical", world.uid),
        bucket_spec("seller", "item", "categorical", world.seller_name),
        bucket_spec("tier", "user", "categorical", TIERS),
        dict(name="log_price", side="item", kind="dense"),
        bucket_spec("intent_words", "user", "multi", vocab),
        bucket_spec("item_id", "item", "categorical", world.item_id.tolist()),
        dict(name="tenure_days", side="user", kind="dense"),
        bucket_spec("tags", "item", "multi", world.tag_names),
        bucket_spec("country", "user", "categorical", COUNTRIES),
        dict(name="stars", side="item", kind="dense"),
        bucket_spec("intent_cat", "user", "categorical", world.intent_code.tolist()),
    ]
    lines = [f"# written by {command}", "# independent of `prerank generate`; see Tests/reference/otherworld.py", "features:"]
    for f in feats:
        lines.append(f"  - name: {f['name']}")
        lines += [f"    {key}: {f[key]}" for key in ("side", "kind", "buckets", "dim") if key in f]
    lines.append("tasks:")
    for name, label in tasks:
        lines += [f"  - name: {name}", f"    label: {label}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--items", type=int, default=15000)
    ap.add_argument("--tasks", type=int, default=3, choices=[2, 3])
    a = ap.parse_args(argv)
    for name in ("requests", "candidates", "users", "items"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if a.candidates > a.items:
        ap.error("--candidates must not exceed --items")
    t0 = time.time()

    # independent streams, so e.g. the world does not depend on --requests
    world_rng, calib_rng, req_rng, label_rng, split_rng = [
        np.random.default_rng(s) for s in np.random.SeedSequence(a.seed).spawn(5)]
    world = World(world_rng, a.users, a.items)
    b = calibrate(world.logits(world.requests(calib_rng, CALIBRATION_REQUESTS, a.candidates)))

    R, K = a.requests, a.candidates
    req = world.requests(req_rng, R, K)
    # stage probabilities P(click), P(cart | click), P(order | cart), and the marginals (the truths)
    s_click, s_cart, s_order = (sigmoid(bi + zi) for bi, zi in zip(b, world.logits(req)))
    p_click = s_click
    p_cart = p_click * s_cart
    p_order = p_cart * s_order
    # progressive labels: each stage can only happen after the previous one
    uniform = label_rng.random((3, R, K))
    click = uniform[0] < s_click
    cart = click & (uniform[1] < s_cart)
    order = cart & (uniform[2] < s_order)
    is_test = split_rng.random(R) < TEST_FRACTION
    hour_weight = 1.2 + np.cos(2 * np.pi * (np.arange(24) - 20) / 24)         # evening peak; no effect on labels
    session_hour = split_rng.choice(24, R, p=hour_weight / hour_weight.sum())

    if a.tasks == 3:
        tasks = [("ctr", "click"), ("atcr", "cart"), ("ctcvr", "order")]
        truths = [p_click, p_cart, p_order]
        label_text = np.array(["0,0,0", "1,0,0", "1,1,0", "1,1,1"])     # indexed by funnel depth
    else:
        tasks = [("ctr", "click"), ("ctcvr", "order")]
        truths = [p_click, p_order]
        label_text = np.array(["0,0", "1,0", "1,0", "1,1"])
    depth = click.astype(np.int8) + cart + order
    labels = [lab for _, lab in tasks]

    os.makedirs(a.out, exist_ok=True)
    command = "otherworld.py " + " ".join(f"--{k} {getattr(a, k)}" for k in ("seed", "requests", "candidates", "users", "items", "tasks"))
    with open(os.path.join(a.out, "features.yaml"), "w") as f:
        f.write(features_yaml(world, tasks, command))

    items = range(len(world.item_id))
    sku_cat = world.cat_code[world.item_cat]
    seller = world.seller_name[world.item_seller]
    price_text = [f"{v:.4f}" for v in world.log_price.tolist()]
    # items.csv: item_id first, the other fields in an order unlike features.yaml's
    with open(os.path.join(a.out, "items.csv"), "w") as f:
        f.write("item_id,tags,log_price,sku_cat,stars,seller\n")
        f.write("".join(f"{world.item_id[i]},{world.item_tags[i]},{price_text[i]},{sku_cat[i]},{world.stars_text[i]},{seller[i]}\n"
                        for i in items))

    # An impression row = label columns + item fragment + request fragment + truth columns.
    item_frag = np.array([f"{world.item_id[i]},{world.stars_text[i]},{sku_cat[i]},{world.item_tags[i]},{seller[i]},{price_text[i]}"
                          for i in items], dtype=object)
    request_id = 900_001 + 3 * np.arange(R)                                   # not 1..R
    user, intent = req["user"], req["intent"]
    req_frag = np.array([f"{session_hour[r]},{request_id[r]},{req['words'][r]},{world.uid[user[r]]},"
                         f"{COUNTRIES[world.user_country[user[r]]]},{world.tenure_text[user[r]]},"
                         f"{world.intent_code[intent[r]]},{TIERS[world.user_tier[user[r]]]}" for r in range(R)], dtype=object)
    header = ",".join(labels + ["item_id", "stars", "sku_cat", "tags", "seller", "log_price",
                                "session_hour", "request_id", "intent_words", "uid", "country", "tenure_days", "intent_cat", "tier"]
                      + [f"truth_{lab}" for lab in labels]) + "\n"
    step = max(1, CHUNK_ROWS // K)                                            # requests per chunk
    with open(os.path.join(a.out, "train.csv"), "w") as train_f, open(os.path.join(a.out, "test.csv"), "w") as test_f:
        for fh in (train_f, test_f):
            fh.write(header)
        for lo in range(0, R, step):
            block = np.arange(lo, min(lo + step, R))
            for fh, sel in ((train_f, block[~is_test[block]]), (test_f, block[is_test[block]])):
                if len(sel) == 0:
                    continue
                cols = [label_text[depth[sel].ravel()], item_frag[req["cand"][sel].ravel()], np.repeat(req_frag[sel], K)]
                cols += [[f"{v:.6g}" for v in t[sel].ravel().tolist()] for t in truths]
                fh.write("".join(",".join(row) + "\n" for row in zip(*cols)))

    # summary: rates over all rows, truth AUCs on the test rows
    def say(msg):
        print(f"otherworld: {msg}", file=sys.stderr)

    n_test = int(is_test.sum()) * K
    say(f"rows: {R * K} (train {R * K - n_test}, test {n_test}), {R} requests x {K} candidates")
    observed = {"click": click, "cart": cart, "order": order}
    say("label rates: " + ", ".join(f"{lab} {100 * observed[lab].mean():.3f}%" for lab in labels)
        + f"; order/click {100 * order.sum() / max(click.sum(), 1):.2f}%")
    say("truth means: " + ", ".join(f"P({lab}) {100 * t.mean():.3f}%" for lab, t in zip(labels, truths)))
    say("intercepts: click {:.4f}, cart {:.4f}, order {:.4f}".format(*b))
    test_rows = np.repeat(is_test, K).reshape(R, K)
    aucs = [auc(t[test_rows], observed[lab][test_rows]) for lab, t in zip(labels, truths)]
    say("test AUC of truth: " + ", ".join(f"{lab} {v:.4f}" if v is not None else f"{lab} n/a" for lab, v in zip(labels, aucs)))
    ctr_only = auc(p_click[test_rows], order[test_rows])
    say(f"test AUC of truth_click for order (a CTR-only ranker): {ctr_only:.4f}" if ctr_only is not None else
        "test AUC of truth_click for order: n/a")
    say(f"time: {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
