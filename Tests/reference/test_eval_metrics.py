"""`prerank eval` and `prerank tune-fusion` against an independent numpy implementation.

A small world is written here: a random model (numpy + official safetensors writer), a catalog,
an index built by `prerank build-index`, and a test.csv with progressive click -> cart -> order
labels, a relevance level, unknown items and interleaved (non-contiguous) requests. Metrics are
recomputed from eval's own --predictions file and the test file's labels, with code written from
the definitions (prerank/Sources/Training/Eval/Metrics.swift docs), sharing nothing with Swift:

  AUC       rank-sum with tied scores given their average rank, positive = label > 0
  log-loss  mean -[y ln p + (1-y) ln(1-p)], p clipped to [1e-7, 1 - 1e-7]
  WR@K      per request rank by (score desc, item id asc); sum of order labels in the top K over
            all orders, summed over requests (micro average)
  List AUC  per request AUC of the score with order > 0 positive; mean over requests with both classes
  NDCG@K    gain 2^g - 1, g = number of positive labels; mean over requests with a positive label
"""
import csv
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import prerank_ref as ref
from conftest import run

K = 20
TASKS = ("ctr", "atcr", "ctcvr")
LABELS = ("click", "cart", "order")


def auc_np(scores, positive):
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # average ranks of ties: ranks 1..n over sorted unique values
    uniq, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts + 1
    avg_rank = (starts + ends) / 2.0
    ranks = avg_rank[inverse]
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def logloss_np(p, y):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y) > 0
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


def rank_order(scores, ids):
    # score descending, id ascending, then input position (lexsort: last key is primary)
    return np.lexsort((np.arange(len(ids)), np.asarray(ids), -np.asarray(scores)))


def list_metrics_np(groups, k):
    captured = total = 0.0
    aucs, ndcgs = [], []
    for g in groups.values():
        scores, ids = np.array(g["score"]), np.array(g["id"])
        orders = np.array(g["order"], dtype=np.float64)
        grades = np.array(g["grade"], dtype=np.float64)
        order = rank_order(scores, ids)
        total += orders.sum()
        captured += orders[order[:k]].sum()
        a = auc_np(scores, orders > 0)
        if a is not None:
            aucs.append(a)
        m = min(k, len(scores))
        disc = 1.0 / np.log2(np.arange(2, m + 2))
        idcg = ((2.0 ** np.sort(grades)[::-1][:m] - 1) * disc).sum()
        if idcg > 0:
            ndcgs.append(((2.0 ** grades[order[:m]] - 1) * disc).sum() / idcg)
    return (captured / total if total > 0 else None, float(np.mean(aucs)) if aucs else None,
            float(np.mean(ndcgs)) if ndcgs else None)


@pytest.fixture(scope="module")
def world(tmp_path_factory, prerank):
    root = tmp_path_factory.mktemp("evalworld")
    model_dir = str(root / "model")
    spec = ref.random_model(model_dir, tasks=TASKS, seed=11)
    # The test file carries click/cart/order: name them as the model's task labels.
    spec["tasks"] = [{"name": t, "label": l} for t, l in zip(TASKS, LABELS)]
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(spec, f, indent=1)
    items_csv = str(root / "items.csv")
    ids = ref.write_catalog(items_csv, 400, seed=3)
    index = str(root / "index.safetensors")
    run(prerank, "build-index", "--model", model_dir, "--items", items_csv, "--out", index)

    model = ref.RefModel(model_dir)
    item_vals = ref.read_catalog(items_csv, model)
    item_vec = {i: model.tower("item", model.encode("item", v)) for i, v in item_vals.items()}
    rng = np.random.default_rng(5)
    rows = []
    for r in range(50):
        rid = f"r{r}" if r != 7 else "r,7 \"quoted\""
        user = {"user_id": f"u{rng.integers(0, 40)}", "query_terms": [f"q{x}" for x in rng.integers(0, 20, rng.integers(0, 4))],
                "segment": ["gold", "silver", ""][r % 3], "age": float(rng.integers(18, 70))}
        u = model.tower("user", model.encode("user", user))
        n = int(rng.integers(5, 120))
        cands = [int(c) for c in rng.choice(ids, n, replace=False)]
        if r % 5 == 0:
            cands += [7, 999999]  # not in the index
        for c in cands:
            p = model.probabilities(u, item_vec[c]) if c in item_vec else np.array([0.1, 0.05, 0.01])
            # Labels follow the model loosely (so metrics are neither 0.5 nor 1).
            click = int(rng.random() < 0.1 + 0.3 * p[0])
            cart = click * int(rng.random() < 0.6)
            order = cart * int(rng.random() < 0.3 + 0.5 * p[2])
            rel = "" if rng.random() < 0.05 else str(int(rng.integers(0, 4)))
            item = item_vals.get(c, {"brand": "b1", "tags": [], "price": 3.0, "rating": 4.0})
            rows.append({"request_id": rid, "user_id": user["user_id"], "query_terms": "|".join(user["query_terms"]),
                         "segment": user["segment"], "age": user["age"], "item_id": c,
                         "brand": item["brand"] or "", "tags": "|".join(item["tags"] or []),
                         "price": "" if item["price"] is None else item["price"], "rating": item["rating"],
                         "click": click, "cart": cart, "order": order, "relevance": rel, "noise": "x,y",
                         "_p": p, "_known": c in item_vec})
    # Interleave: move every 9th row to the end so some requests are not contiguous.
    rows = [r for i, r in enumerate(rows) if i % 9] + [r for i, r in enumerate(rows) if i % 9 == 0]
    test_csv = str(root / "test.csv")
    cols = ["request_id", "user_id", "query_terms", "segment", "age", "item_id", "brand", "tags", "price", "rating",
            "click", "cart", "order", "relevance", "noise"]
    with open(test_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in rows:
            w.writerow([row[c] for c in cols])
    return {"root": root, "model": model_dir, "index": index, "test": test_csv, "rows": rows}


def read_predictions(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        body = [row for row in r]
    return header, body


def check_against_numpy(world, report, pred_path, fusion):
    header, body = read_predictions(pred_path)
    assert header == ["request_id", "item_id", *TASKS, "score"]
    known = [r for r in world["rows"] if r["_known"]]
    assert report["rows"] == len(body) == len(known)
    assert report["skipped"]["unknown_items"] == len(world["rows"]) - len(known)
    # Probabilities are F32 (written in shortest round-trip form): read them back as float32, so
    # values near 1 keep their exact F32 value (1 - p at p ~ 1 has few bits; clipping sees it).
    probs = np.array([[x for x in row[2:2 + len(TASKS)]] for row in body], dtype=np.float32).astype(np.float64)
    scores = np.array([float(row[-1]) for row in body])
    for row, src in zip(body, known):  # predictions are in input order
        assert row[0] == src["request_id"] and int(row[1]) == src["item_id"]
    # The serving path's probabilities agree with the float64 numpy forward pass.
    ref_p = np.array([r["_p"] for r in known])
    assert np.max(np.abs(probs - ref_p)) < 1e-5
    # The score column is the fusion of the probability columns.
    rel = np.array([float(r["relevance"] or 0) for r in known])
    expect = np.array([ref.fuse(fusion[0], *fusion[1:], p[0], p[-1], rr) for p, rr in zip(probs, rel)])
    assert np.allclose(scores, expect, rtol=1e-6, atol=1e-12)
    for t, (task, label) in enumerate(zip(TASKS, LABELS)):
        y = np.array([r[label] for r in known])
        assert report["tasks"][task]["auc"] == pytest.approx(auc_np(probs[:, t], y > 0), abs=1e-6)
        assert report["tasks"][task]["logloss"] == pytest.approx(logloss_np(probs[:, t], y), abs=1e-6)
    groups = {}
    for s, p, src in zip(scores, probs, known):
        g = groups.setdefault(src["request_id"], {"score": [], "id": [], "order": [], "grade": []})
        g["score"].append(s)
        g["id"].append(src["item_id"])
        g["order"].append(src["order"])
        g["grade"].append(src["click"] + src["cart"] + src["order"])
    return groups


@pytest.mark.parametrize("fusion", [("additive", 1.0, 20.0, 0.01), ("multiplicative", 0.8, 1.0, 0.0), ("additive", 0.0, 0.0, 0.0)])
def test_eval_matches_numpy(world, prerank, fusion):
    pred = str(world["root"] / f"pred-{fusion[0]}-{fusion[1]}.csv")
    spec = f"{fusion[0]}:{fusion[1]},{fusion[2]}" + (f",{fusion[3]}" if fusion[0] == "additive" else "")
    out = run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", world["test"],
              "--fusion", spec, "--k", K, "--json", "--predictions", pred)
    report = json.loads(out.stdout)
    assert set(report) >= {"tasks", "lists", "rows"}
    assert list(report["tasks"]) == list(TASKS)
    assert set(report["lists"]) == {f"wr@{K}", "list_auc", f"ndcg@{K}"}
    groups = check_against_numpy(world, report, pred, fusion)
    wr, lauc, ndcg = list_metrics_np(groups, K)
    assert 0 < wr < 1, "the world should make WR@K non-trivial"
    assert report["lists"][f"wr@{K}"] == pytest.approx(wr, abs=1e-6)
    assert report["lists"]["list_auc"] == pytest.approx(lauc, abs=1e-6)
    assert report["lists"][f"ndcg@{K}"] == pytest.approx(ndcg, abs=1e-6)


def test_eval_default_k_and_text(world, prerank):
    out = run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", world["test"], "--json")
    report = json.loads(out.stdout)
    assert set(report["lists"]) == {"wr@100", "list_auc", "ndcg@100"}
    text = run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", world["test"]).stdout
    assert "WR@100" in text and "ctcvr" in text and "List AUC" in text


def test_tune_fusion_best_equals_eval_and_svg_parses(world, prerank):
    svg = str(world["root"] / "map.svg")
    out = run(prerank, "tune-fusion", "--model", world["model"], "--index", world["index"], "--data", world["test"],
              "--k", K, "--svg", svg, "--json")
    res = json.loads(out.stdout)
    assert set(res["formulas"]) == {"additive", "multiplicative"}
    add = res["formulas"]["additive"]
    assert add["grid"]["gamma"] == [0, 0.005, 0.01, 0.02, 0.05, 0.1]  # the file has relevance
    assert len(add["points"]) == 5 * 9 * 6
    for formula, r in res["formulas"].items():
        best = r["best"]
        assert best[f"wr@{K}"] == max(p[f"wr@{K}"] for p in r["points"])
        spec = f"{formula}:{best['alpha']},{best['beta']}" + (f",{best['gamma']}" if formula == "additive" else "")
        ev = json.loads(run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", world["test"],
                            "--fusion", spec, "--k", K, "--json").stdout)
        assert ev["lists"][f"wr@{K}"] == pytest.approx(best[f"wr@{K}"], abs=1e-12)
    tree = ET.parse(svg)
    root = tree.getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    panels = [g for g in root.iter(ns + "g") if g.get("class") == "panel"]
    assert [p.get("id") for p in panels] == ["additive", "multiplicative"]
    for p in panels:
        assert len([r for r in p.iter(ns + "rect") if r.get("class") == "best"]) == 1
    texts = "".join(t.text or "" for t in root.iter(ns + "text"))
    assert f"WR@{K}" in texts and "α (CTR weight)" in texts and "β (CTCVR weight)" in texts
    # text mode prints the config lines to paste
    txt = run(prerank, "tune-fusion", "--model", world["model"], "--index", world["index"], "--data", world["test"],
              "--k", K, "--formula", "multiplicative").stdout
    assert "fusion:\n  formula: multiplicative\n  alpha: " in txt and "gamma: 0" in txt


def test_tune_fusion_refuses_a_k_that_cannot_separate(world, prerank):
    p = run(prerank, "tune-fusion", "--model", world["model"], "--index", world["index"], "--data", world["test"],
            "--k", 100000, check=False)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: --k 100000 is not below any request's list length"), p.stderr
    assert p.stdout == ""


def test_bad_input_is_one_line_error(world, prerank, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,item_id,click,cart\nr1,1000,1,0\n")
    p = run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", str(bad), check=False)
    assert p.returncode == 1 and "order" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", world["test"],
            "--fusion", "multiplicative:1,2,0.5", check=False)
    assert p.returncode == 1 and "gamma" in p.stderr
    p = run(prerank, "eval", "--model", world["model"], "--index", world["index"], "--data", str(tmp_path / "nope.csv"), check=False)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
