#!/usr/bin/env bash
# Live catalog under load (issue #15; docs/OPERATIONS.md "Live catalog"): serves the 1M-item,
# T = 3, d = 64 F32 world of scripts/spec-world.sh with an update log, and measures in one run
#   A. closed-loop load (wrk, the 10k-candidate bodies in turn), no upserts;
#   B. the same load while scripts/upsert-stream.py posts UPSERT_RATE rows/s to /admin/items in
#      batches of BATCH (half re-priced existing items, half new ids) and, after every batch,
#      asks /prerank for that batch's new ids (visibility: the time from sending the batch to
#      the first answer that scores all of them);
#   C. the same load again without upserts, now over the delta B left (what a grown delta costs).
# Prints one table: req/s, p50/p99, errors per phase, and the upsert stream's achieved rate,
# batch latency and visibility.
#
# Usage: scripts/loadtest-upserts.sh [PRERANK_BINARY] [WORLD_DIR]
#   env: SECONDS_PER_RUN (20), UPSERT_RATE (5000), BATCH (500), WRK_THREADS (2), WRK_CONNECTIONS (4),
#        INDEX (index-f32.safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
if [ -z "${1:-}" ]; then
    scripts/setup-test.sh
    swift build -c release --product prerank
fi
need_py  # Python runs in the project environment (scripts/setup-test.sh makes it)
BIN="${1:-$(swift build -c release --show-bin-path)/prerank}"
WORLD="${2:-/tmp/prerank-spec}"
SECS="${SECONDS_PER_RUN:-20}"
RATE="${UPSERT_RATE:-5000}"
BATCH="${BATCH:-500}"
INDEX="${INDEX:-index-f32.safetensors}"
command -v wrk >/dev/null || { echo "loadtest-upserts: wrk is not installed (scripts/setup-test.sh)" >&2; exit 2; }
scripts/spec-world.sh "$BIN" "$WORLD"
OUT=/tmp/prerank-upserts
rm -rf "$OUT" && mkdir -p "$OUT"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export BODIES="$WORLD/bodies.jsonl"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$OUT/token"
cat > "$OUT/prerank.yaml" <<YAML
server: {host: 127.0.0.1, port: $PORT, admin_token_file: $OUT/token}
model: {dir: $WORLD/model, index: $WORLD/$INDEX, updates: $OUT/updates.log}
logging: {level: warning}
YAML
OPENBLAS_NUM_THREADS=1 "$BIN" serve --config "$OUT/prerank.yaml" > "$OUT/serve.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 900); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/serve.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "loadtest-upserts: the server did not get ready" >&2; exit 1; }

LOAD=(wrk -t"${WRK_THREADS:-2}" -c"${WRK_CONNECTIONS:-4}" --timeout 5s --latency -s scripts/reload-storm.lua "http://127.0.0.1:$PORT")
"${LOAD[@]}" -d3s > /dev/null   # warm-up
"${LOAD[@]}" -d"${SECS}s" > "$OUT/wrk-A.txt"
"$PY" scripts/upsert-stream.py --url "http://127.0.0.1:$PORT" --token-file "$OUT/token" \
    --items "$WORLD/data/items.csv" --rate "$RATE" --batch "$BATCH" --seconds "$((SECS + 2))" \
    --json "$OUT/stream.json" --ready-file "$OUT/stream.ready" > "$OUT/stream.log" 2>&1 &
STREAM=$!
# The stream builds its batches first (reading the 1M-row items.csv: seconds of CPU), then starts.
while [ ! -f "$OUT/stream.ready" ]; do
    kill -0 "$STREAM" 2>/dev/null || { cat "$OUT/stream.log" >&2; exit 1; }
    sleep 0.2
done
sleep 1
"${LOAD[@]}" -d"${SECS}s" > "$OUT/wrk-B.txt"
wait "$STREAM" || { cat "$OUT/stream.log" >&2; exit 1; }
"${LOAD[@]}" -d"${SECS}s" > "$OUT/wrk-C.txt"
catalog="$(curl -fsS "http://127.0.0.1:$PORT/v1/model" | "$PY" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["model"]["index"]["catalog"]))')"

echo "$(date -u +%Y-%m-%dT%H:%MZ) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores shared by server, wrk and the upsert stream; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "world $WORLD/$INDEX (1M items, T = 3, d = 64), 10k random candidates per request, wrk ${WRK_THREADS:-2} threads × ${WRK_CONNECTIONS:-4} connections, ${SECS} s per phase"
"$PY" - "$OUT" "$SECS" "$catalog" <<'PY'
import json, re, sys
out, secs, catalog = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
def wrk(phase):
    t = open(f"{out}/wrk-{phase}.txt").read()
    r = dict(re.findall(r"(\w+)=([\d.]+)", re.search(r"^RESULT (.*)$", t, re.M).group(1)))
    return float(r["requests"]) / secs, float(r["p50_ms"]), float(r["p99_ms"]), int(r["non200"]), int(r["socket_errors"])
s = json.load(open(f"{out}/stream.json"))
print("| phase | req/s | p50 ms | p99 ms | non-200 | socket errors |")
print("|---|---:|---:|---:|---:|---:|")
rows = {p: wrk(p) for p in "ABC"}
names = {"A": "A: no upserts", "B": f"B: upserts at {s['achieved_rows_per_s']:.0f} rows/s", "C": f"C: no upserts, delta of {catalog['delta_items']} items"}
for p in "ABC":
    r = rows[p]
    print(f"| {names[p]} | {r[0]:.0f} | {r[1]:.2f} | {r[2]:.2f} | {r[3]} | {r[4]} |")
print()
print(f"p99 ratio B/A {rows['B'][2] / rows['A'][2]:.2f}× (target ≤ 1.5×), C/A {rows['C'][2] / rows['A'][2]:.2f}×; "
      f"throughput B/A {rows['B'][0] / rows['A'][0]:.2f}×")
print(f"upsert stream: {s['rows']} rows in {s['batches']} batches of {s['batch']} over {s['seconds']:.1f} s "
      f"= {s['achieved_rows_per_s']:.0f} rows/s (target {s['target_rows_per_s']:.0f}); refused batches {s['refused']}; "
      f"batch latency p50 {s['batch_ms_p50']:.1f} ms, p99 {s['batch_ms_p99']:.1f} ms, max {s['batch_ms_max']:.1f} ms; "
      f"visible (all new ids scored) p50 {s['visible_ms_p50']:.1f} ms, max {s['visible_ms_max']:.1f} ms (target ≤ 1000 ms); "
      f"invisible after the answer: {s['not_visible']}")
print(f"catalog after: {json.dumps(catalog)}")
PY
