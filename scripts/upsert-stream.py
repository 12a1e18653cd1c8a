#!/usr/bin/env python3
"""A paced stream of live-catalog changes for scripts/loadtest-upserts.sh (issue #15).

Posts `POST /admin/items` batches at a target rate (rows per second, batches of --batch rows)
for --seconds: each batch is half existing items of --items re-priced (their base rows become
hidden and the delta serves them) and half new ids (above every id of the file). After every
batch's 200 it asks `POST /prerank` for that batch's new ids and records whether all of them
are scored (read-your-writes: the server answers a change only after the snapshot that serves
it is in place) and the time from sending the batch to that answer.

Writes a JSON summary (--json): rows, batches, achieved rows/s, batch latency percentiles,
visibility percentiles, refused batches, new ids not visible after the answer.
"""
import argparse
import csv
import http.client
import json
import random
import sys
import time


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--items", required=True, help="items.csv of the served world")
    ap.add_argument("--rate", type=float, default=5000, help="rows per second")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", required=True)
    ap.add_argument("--ready-file", help="written once every batch is built, just before the stream starts")
    a = ap.parse_args()

    token = open(a.token_file).read().strip()
    host, port = a.url.split("://", 1)[1].rstrip("/").split(":")
    rng = random.Random(a.seed)
    rows, max_id = [], 0
    with open(a.items) as f:
        reader = csv.DictReader(f)
        for r in reader:
            rows.append(r)
            max_id = max(max_id, int(r["item_id"]))
    columns = [c for c in reader.fieldnames if c != "item_id"]

    def typed(col, text):
        try:
            return float(text) if col in ("price", "rating") or "." in text else text
        except ValueError:
            return text

    # Every batch body is built before the stream starts (--ready-file says when), so the timed
    # part costs the client only sending and reading: in production the writer of the
    # changes runs on another machine, and its CPU must not be charged to the server here.
    total_batches = int(a.rate * a.seconds / a.batch) + 1
    next_new = max_id + 1
    prepared = []
    half = a.batch // 2
    for _ in range(total_batches):
        upsert = []
        for r in rng.sample(rows, half):
            row = {"item_id": int(r["item_id"])}
            row.update({c: typed(c, r[c]) for c in columns})
            if "price" in row:
                row["price"] = round(float(row["price"]) * rng.uniform(0.8, 1.2), 2)
            upsert.append(row)
        new_ids = list(range(next_new, next_new + a.batch - half))
        for i, r in zip(new_ids, rng.sample(rows, a.batch - half)):
            row = {"item_id": i}
            row.update({c: typed(c, r[c]) for c in columns})
            upsert.append(row)
        next_new += len(new_ids)
        probe = json.dumps({"user": {}, "query": {}, "candidates": new_ids, "k": len(new_ids)}).encode()
        prepared.append((json.dumps({"upsert": upsert}).encode(), len(upsert), new_ids, probe))
    del rows
    if a.ready_file:
        open(a.ready_file, "w").write(f"{len(prepared)} batches\n")

    admin = http.client.HTTPConnection(host, int(port), timeout=30)
    prober = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    batch_ms, visible_ms = [], []
    sent = refused = not_visible = batches = 0
    start = time.monotonic()
    for body, n, new_ids, probe in prepared:
        if time.monotonic() - start >= a.seconds:
            break
        due = start + sent / a.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        t0 = time.monotonic()
        admin.request("POST", "/admin/items", body, headers)
        resp = admin.getresponse()
        answer_body = resp.read()
        t1 = time.monotonic()
        batches += 1
        sent += n
        if resp.status != 200:
            refused += 1
            print(f"batch {batches}: {resp.status} {answer_body[:200]!r}", file=sys.stderr)
            continue
        batch_ms.append((t1 - t0) * 1e3)
        prober.request("POST", "/prerank", probe, {"Content-Type": "application/json"})
        answer = json.loads(prober.getresponse().read())
        t2 = time.monotonic()
        scored = {i["id"] for i in answer.get("items", [])}
        if scored >= set(new_ids):
            visible_ms.append((t2 - t0) * 1e3)
        else:
            not_visible += len(set(new_ids) - scored)
    elapsed = time.monotonic() - start
    summary = {
        "rows": sent, "batches": batches, "batch": a.batch, "seconds": elapsed,
        "achieved_rows_per_s": sent / elapsed, "target_rows_per_s": a.rate, "refused": refused,
        "batch_ms_p50": percentile(batch_ms, 0.5), "batch_ms_p99": percentile(batch_ms, 0.99),
        "batch_ms_max": max(batch_ms) if batch_ms else None,
        "visible_ms_p50": percentile(visible_ms, 0.5), "visible_ms_max": max(visible_ms) if visible_ms else None,
        "not_visible": not_visible,
    }
    json.dump(summary, open(a.json, "w"), indent=1)
    print(json.dumps(summary))
    return 1 if refused or not_visible else 0


if __name__ == "__main__":
    sys.exit(main())
