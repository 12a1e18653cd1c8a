#!/usr/bin/env python3
"""Markdown tables for docs/RESULTS.md "Id fields" from the rows scripts/results_ids.sh appends
to a TSV (docs/results_ids.tsv): mean ± sd over seeds of test AUC CTR / ATCR / CTCVR.

Usage: python3 scripts/results_ids_table.py docs/results_ids.tsv [--variant defaults]
Prints (1) per world and arch: full spec, id-free spec, full − id-free (paired by seed), best
epochs; GBDT and truth rows; (2) every other variant of ResFlow on the full spec next to the
defaults (paired by world and seed).
"""
import argparse
import csv
import statistics as st
from collections import defaultdict

TASKS = ("ctr", "atcr", "ctcvr")


def ms(xs):
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{st.mean(xs):.4f} ± {st.stdev(xs):.4f}"


def signed(xs):
    m = st.mean(xs)
    return f"{m:+.4f}" + (f" ± {st.stdev(xs):.4f}" if len(xs) > 1 else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tsv")
    ap.add_argument("--variant", default="defaults")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.tsv), delimiter="\t"))
    runs = defaultdict(dict)            # (world, arch, spec, variant) -> seed -> row
    for r in rows:
        runs[(r["world"], r["arch"], r["spec"], r["variant"])][r["seed"]] = r
    worlds = sorted({r["world"] for r in rows})
    archs = [x for x in ("resflow", "esmm", "nse") if any(k[1] == x for k in runs)]

    print("| world | model | n | full spec CTR / ATCR / CTCVR | id-free spec | full − id-free | best epochs (full; id-free) |")
    print("|---|---|---|---|---|---|---|")
    for w in worlds:
        for arch in archs:
            full = runs.get((w, arch, "full", a.variant), {})
            noid = runs.get((w, arch, "noid", a.variant), {})
            if not full and not noid:
                continue
            seeds = sorted(set(full) & set(noid))
            cell = lambda d, t: [float(d[s][t]) for s in sorted(d)]
            f = " / ".join(ms(cell(full, t)) for t in TASKS)
            n = " / ".join(ms(cell(noid, t)) for t in TASKS)
            d = " / ".join(signed([float(full[s][t]) - float(noid[s][t]) for s in seeds]) for t in TASKS) if seeds else "—"
            eps = ",".join(full[s]["best_epoch"] for s in sorted(full)) + "; " + ",".join(noid[s]["best_epoch"] for s in sorted(noid))
            print(f"| {w} | {arch} | {len(seeds)} | {f} | {n} | {d} | {eps} |")
        for ref in ("gbdt", "truth"):
            for (ww, arch, spec, var), d in runs.items():
                if ww == w and arch == ref:
                    r = next(iter(d.values()))
                    label = ", ".join(x for x in (spec if spec != "full" else "",
                                                  var if var not in ("baselines", "generator") else "") if x)
                    print(f"| {w} | {ref}{' (' + label + ')' if label else ''} | 1 | "
                          + " / ".join(f"{float(r[t]):.4f}" for t in TASKS) + " | | | |")

    others = sorted({k[3] for k in runs if k[1] == "resflow" and k[3] != a.variant})
    if others:
        print()
        print("| world | ResFlow, full spec | n | CTR / ATCR / CTCVR | − defaults (paired by seed) | best epochs | train s |")
        print("|---|---|---|---|---|---|---|")
        for w in worlds:
            for v in [a.variant] + others:
                for spec in ("full", "noid"):
                    d = runs.get((w, "resflow", spec, v), {})
                    if not d or (v == a.variant and spec == "noid"):
                        continue
                    base = runs.get((w, "resflow", spec, a.variant), {})
                    seeds = sorted(set(d) & set(base))
                    vals = " / ".join(ms([float(d[s][t]) for s in sorted(d)]) for t in TASKS)
                    diff = (" / ".join(signed([float(d[s][t]) - float(base[s][t]) for s in seeds]) for t in TASKS)
                            if seeds and v != a.variant else "")
                    secs = [float(d[s]["train_s"]) for s in d if d[s]["train_s"]]
                    sec = f"{st.mean(secs):.0f}" if secs else "—"
                    name = v + ("" if spec == "full" else " (id-free spec)")
                    print(f"| {w} | {name} | {len(d)} | {vals} | {diff} | "
                          f"{','.join(d[s]['best_epoch'] for s in sorted(d))} | {sec} |")


if __name__ == "__main__":
    main()
