"""Summarises scripts/results.sh output as a RESULTS table (mean ± std over seeds).

The first and last tasks of features.yaml are the CTR and CTCVR columns; the truth row is the
AUC of the generator's `truth_<label>` columns on the same test rows.
"""
import csv
import json
import os
import statistics
import sys

import numpy as np
import yaml

out = sys.argv[1]
archs = ["nse", "nse+fr", "nse+lr", "resflow", "esmm"]
tasks = yaml.safe_load(open(os.path.join(out, "data", "features.yaml")))["tasks"]
first, last = tasks[0], tasks[-1]


def ms(values):
    if not values:
        return "–"
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.4f} ± {s:.4f}"


def auc(scores, labels):
    """Rank-sum AUC; tied scores share their average rank."""
    scores, pos = np.asarray(scores, dtype=float), np.asarray(labels) > 0
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    n1, n0 = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


print(f"| model | {first['name'].upper()} AUC | {last['name'].upper()} AUC | {last['name'].upper()} log-loss "
      f"| WR@100 additive (α 1, β 20) | WR@100 multiplicative (CTR^0.2·CTCVR) | best epoch |")
print("|---|---|---|---|---|---|---|")
for arch in archs:
    rows = {"ctr": [], "ctcvr": [], "ll": [], "wr": [], "wrm": [], "epoch": []}
    for seed in (1, 2, 3):
        p = os.path.join(out, f"{arch}-{seed}.json")
        if not os.path.exists(p):
            continue
        r = json.load(open(p))
        rows["ctr"].append(r["tasks"][first["name"]]["auc"])
        rows["ctcvr"].append(r["tasks"][last["name"]]["auc"])
        rows["ll"].append(r["tasks"][last["name"]]["logloss"])
        rows["wr"].append(r["lists"]["wr@100"])
        rows["wrm"].append(json.load(open(os.path.join(out, f"{arch}-{seed}.mult.json")))["lists"]["wr@100"])
        rows["epoch"].append(json.load(open(os.path.join(out, f"{arch}-{seed}", "model.json")))["training"]["best_epoch"])
    epochs = ", ".join(str(int(e)) for e in rows["epoch"])
    print(f"| {arch} | {ms(rows['ctr'])} | {ms(rows['ctcvr'])} | {ms(rows['ll'])} | {ms(rows['wr'])} | {ms(rows['wrm'])} | {epochs} |")

cols = [first["label"], last["label"], f"truth_{first['label']}", f"truth_{last['label']}"]
values = {c: [] for c in cols}
with open(os.path.join(out, "data", "test.csv"), newline="") as f:
    for row in csv.DictReader(f):
        for c in cols:
            values[c].append(float(row[c]))
print(f"| truth (generator's probabilities) | {auc(values[cols[2]], values[cols[0]]):.4f} | "
      f"{auc(values[cols[3]], values[cols[1]]):.4f} | | | | |")
print(f"\n{int(sum(values[cols[1]]))} {last['label']}s and {int(sum(values[cols[0]]))} {first['label']}s "
      f"in {len(values[cols[0]])} test impressions.")
