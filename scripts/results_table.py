"""Summarises scripts/results.sh output as the RESULTS table (mean ± std over seeds)."""
import json
import os
import statistics
import sys

out = sys.argv[1]
archs = ["nse", "nse+fr", "nse+lr", "resflow", "esmm"]
print("| model | CTR AUC | CTCVR AUC | CTCVR log-loss | WR@10 additive (1, 20) | WR@10 multiplicative (0.2, 1) |")
print("|---|---|---|---|---|---|")


def ms(values):
    if not values:
        return "–"
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.4f} ± {s:.4f}"


for arch in archs:
    rows = {"ctr": [], "ctcvr": [], "ll": [], "wr": [], "wrm": []}
    for seed in (1, 2, 3):
        p = os.path.join(out, f"{arch}-{seed}.json")
        if not os.path.exists(p):
            continue
        r = json.load(open(p))
        rows["ctr"].append(r["tasks"]["ctr"]["auc"])
        rows["ctcvr"].append(r["tasks"]["ctcvr"]["auc"])
        rows["ll"].append(r["tasks"]["ctcvr"]["logloss"])
        rows["wr"].append(r["lists"]["wr@10"])
        m = json.load(open(os.path.join(out, f"{arch}-{seed}.mult.json")))
        rows["wrm"].append(m["lists"]["wr@10"])
    print(f"| {arch} | {ms(rows['ctr'])} | {ms(rows['ctcvr'])} | {ms(rows['ll'])} | {ms(rows['wr'])} | {ms(rows['wrm'])} |")


def auc(scores, labels):
    import numpy as np
    scores, labels = np.asarray(scores), np.asarray(labels)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels > 0
    n1, n0 = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


import csv
truth = {"click": [], "order": [], "truth_click": [], "truth_order": []}
with open(os.path.join(out, "data", "test.csv")) as f:
    for row in csv.DictReader(f):
        for k in truth:
            truth[k].append(float(row[k]))
print(f"| truth (generator's probabilities) | {auc(truth['truth_click'], truth['click']):.4f} | "
      f"{auc(truth['truth_order'], truth['order']):.4f} | | | |")
print(f"\n{int(sum(truth['order']))} orders and {int(sum(truth['click']))} clicks in {len(truth['click'])} test impressions.")
