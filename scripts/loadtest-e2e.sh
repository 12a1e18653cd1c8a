#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md "End to end" in one command: serves the demo model (making it
# if needed), writes 200 distinct 10k-candidate bodies, sweeps the open-loop rate until p99
# passes 15 ms, and stops the server. Output: /tmp/prerank-e2e/{sweep.json,sweep.svg}.
# Usage: scripts/loadtest-e2e.sh [extra loadtest options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product prerank
BIN="$(swift build -c release --show-bin-path)/prerank"
[ -f demo/model/model.json ] && [ -f demo/index.safetensors ] || scripts/make-demo.sh "$BIN"
OUT=/tmp/prerank-e2e
mkdir -p "$OUT"
OPENBLAS_NUM_THREADS=1 "$BIN" serve --config config/prerank.yaml > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.1; done
"$BIN" loadtest --model demo/model --index demo/index.safetensors --candidates 10000 --bodies 200 \
    --write-requests "$OUT/bodies.jsonl" --rate 1 --duration 1 --warmup 0 > /dev/null
"$BIN" loadtest --requests "$OUT/bodies.jsonl" --sweep --rate 400 --step-factor 1.25 --p99-target 15 \
    --duration 8 --svg "$OUT/sweep.svg" --json "$@" > "$OUT/sweep.json"
echo "e2e: results in $OUT/sweep.json and $OUT/sweep.svg" >&2
