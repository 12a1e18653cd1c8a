#!/usr/bin/env bash
# The demo model end to end in one command: serves it on a free port of its own (never whatever
# already listens on :8080), writes 200 distinct 10k-candidate bodies, sweeps the open-loop rate
# until p99 passes 15 ms, and stops the server. Output: /tmp/prerank-e2e/{sweep.json,sweep.svg}.
# The SPEC-scale figures (1M items) come from scripts/loadtest-spec.sh instead.
# Usage: scripts/loadtest-e2e.sh [extra loadtest options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
scripts/setup-test.sh  # wrk, and the project environment Python runs in
swift build -c release --product prerank
BIN="$(swift build -c release --show-bin-path)/prerank"
[ -f demo/model/model.json ] && [ -f demo/index.safetensors ] || scripts/make-demo.sh "$BIN"
OUT=/tmp/prerank-e2e
mkdir -p "$OUT"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$OUT/prerank.yaml" <<YAML
server: {host: 127.0.0.1, port: $PORT}
model: {dir: $PWD/demo/model, index: $PWD/demo/index.safetensors}
logging: {level: warning}
YAML
OPENBLAS_NUM_THREADS=1 "$BIN" serve --config "$OUT/prerank.yaml" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
ready=0
for _ in $(seq 1 300); do
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "e2e: the server exited before it was ready:" >&2; cat "$OUT/serve.log" >&2; exit 1
    fi
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && { ready=1; break; }
    sleep 0.1
done
[ "$ready" = 1 ] || { echo "e2e: the server was not ready after 30 s (log: $OUT/serve.log)" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/prerank"
"$BIN" loadtest --url "$URL" --model demo/model --index demo/index.safetensors --candidates 10000 --bodies 200 \
    --write-requests "$OUT/bodies.jsonl" --rate 1 --duration 1 --warmup 0 > /dev/null
"$BIN" loadtest --url "$URL" --requests "$OUT/bodies.jsonl" --sweep --rate 400 --step-factor 1.25 --p99-target 15 \
    --duration 8 --svg "$OUT/sweep.svg" --json "$@" > "$OUT/sweep.json"
echo "e2e: results in $OUT/sweep.json and $OUT/sweep.svg" >&2
