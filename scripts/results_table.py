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
