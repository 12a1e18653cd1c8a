#!/usr/bin/env bash
# Measures what a storm of reloads costs the requests in flight (issue #10): closed-loop load on
# the SPEC-scale world (1M-item F32 index, 10k-candidate bodies) for a steady phase, then the same
# load with RELOADS SIGHUPs spread over the storm phase. Prints requests, answers that are not 200
# (and socket errors), p50/p99 of both phases and p99(storm)/p99(steady).
#
# Usage: scripts/reload-storm.sh [PRERANK_BINARY] [WORLD_DIR]
#   defaults: .build-reload/release/prerank, /tmp/prerank-spec (scripts/spec-world.sh builds it)
#   env: SECONDS_PER_PHASE (15), RELOADS (100), WRK_THREADS (2), WRK_CONNECTIONS (4),
#        CHANGE_CONFIG (1: every other reload changes fusion.beta, so config-only reloads are
#        exercised too; 0: every reload re-reads unchanged files), INDEX (index-f32.safetensors),
#        SWAP_INDEX (0; N > 0: every Nth reload points model.index at the other of two copies of
#        the index, so those reloads really map a new 776 MB file — a model rollout under load)
# Needs wrk (scripts/setup-test.sh installs it). Exit status 1 when the storm phase had a failure or
# p99 above 1.5x the steady phase.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_py  # Python runs in the project environment (scripts/setup-test.sh makes it)
BIN="${1:-.build-reload/release/prerank}"
WORLD="${2:-/tmp/prerank-spec}"
SECS="${SECONDS_PER_PHASE:-15}"
RELOADS="${RELOADS:-100}"
INDEX="${INDEX:-index-f32.safetensors}"
CHANGE_CONFIG="${CHANGE_CONFIG:-1}"
SWAP_INDEX="${SWAP_INDEX:-0}"
command -v wrk >/dev/null || { echo "reload-storm: wrk is not installed (scripts/setup-test.sh)" >&2; exit 2; }
[ -f "$WORLD/bodies.jsonl" ] || { echo "reload-storm: no $WORLD/bodies.jsonl (scripts/spec-world.sh)" >&2; exit 2; }

TMP="$(mktemp -d)"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
echo "reload-storm-token-0123456789" > "$TMP/token"
INDEX_PATH="$WORLD/$INDEX"
if [ "$SWAP_INDEX" -gt 0 ]; then cp "$WORLD/$INDEX" "$TMP/index-copy.safetensors"; fi
write_config() {   # $1 = fusion beta; written to a temporary file and renamed (never read torn)
    cat > "$TMP/prerank.yaml.tmp" <<YAML
server:
  host: 127.0.0.1
  port: $PORT
  admin_token_file: $TMP/token
model:
  dir: $WORLD/model
  index: $INDEX_PATH
fusion:
  beta: $1
logging:
  level: warning
YAML
    mv "$TMP/prerank.yaml.tmp" "$TMP/prerank.yaml"
}
write_config 20.0
OPENBLAS_NUM_THREADS=1 "$BIN" serve --config "$TMP/prerank.yaml" > "$TMP/server.log" 2>&1 &
PID=$!
cleanup() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
    sleep 0.1
done

LOAD=(wrk -t"${WRK_THREADS:-2}" -c"${WRK_CONNECTIONS:-4}" --timeout 5s -s scripts/reload-storm.lua "http://127.0.0.1:$PORT")
export BODIES="$WORLD/bodies.jsonl"
"${LOAD[@]}" -d3s > /dev/null                          # warm-up: page cache, allocator, branch predictors
steady="$("${LOAD[@]}" -d"${SECS}s" | grep '^RESULT')"

"${LOAD[@]}" -d"${SECS}s" > "$TMP/storm.out" &
WRK=$!
gap="$("$PY" -c "print($SECS / $RELOADS * 0.95)")"
for i in $(seq 1 "$RELOADS"); do
    if [ "$SWAP_INDEX" -gt 0 ] && [ $((i % SWAP_INDEX)) = 0 ]; then
        if [ "$INDEX_PATH" = "$WORLD/$INDEX" ]; then INDEX_PATH="$TMP/index-copy.safetensors"; else INDEX_PATH="$WORLD/$INDEX"; fi
        write_config "$((20 + i % 4)).0"
    elif [ "$CHANGE_CONFIG" = 1 ] && [ $((i % 2)) = 0 ]; then write_config "$((20 + i % 4)).0"; fi
    kill -HUP "$PID"
    sleep "$gap"
done
wait "$WRK"
storm="$(grep '^RESULT' "$TMP/storm.out")"
sleep 2   # let the last reloads finish before counting them
reloads="$(curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -E '^prerank_(reloads_total|index_loads_total|model_loads_total|snapshots_released_total)' | tr '\n' ' ')"

field() { sed -E "s/.*$2=([0-9.]+).*/\1/" <<<"$1"; }
printf '%-7s %9s %7s %5s %5s %13s %8s %8s %8s\n' phase requests non200 503 504 socket_errors p50_ms p99_ms max_ms
for phase in steady storm; do
    r="${!phase}"
    printf '%-7s %9s %7s %5s %5s %13s %8s %8s %8s\n' "$phase" "$(field "$r" requests)" "$(field "$r" non200)" "$(field "$r" 503)" \
        "$(field "$r" 504)" "$(field "$r" socket_errors)" \
        "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" max_ms)"
done
ratio="$("$PY" -c "print(f'{$(field "$storm" p99_ms) / $(field "$steady" p99_ms):.2f}')")"
echo "p99(storm)/p99(steady) = $ratio   ($RELOADS SIGHUPs in ${SECS} s; $reloads)"
failed=$(( $(field "$storm" non200) + $(field "$storm" socket_errors) ))
"$PY" -c "import sys; sys.exit(0 if $failed == 0 and $ratio <= 1.5 else 1)" && echo "reload-storm: PASS" || { echo "reload-storm: MISSED (target: 0 failed, ratio <= 1.5)"; exit 1; }
