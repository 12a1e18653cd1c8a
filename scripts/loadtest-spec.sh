#!/usr/bin/env bash
# End to end at the SPEC's scale (docs/PERFORMANCE.md "End to end at the SPEC's scale"): serves
# the 1M-item, T = 3, d = 64 world of scripts/spec-world.sh from its F32 index and from its I8
# index with F32 rescore rows, one after the other on the same port and config, and measures each
# in the same run with
#   - wrk -t2 -c4 (closed loop, the 64 distinct 10k-candidate bodies in turn): req/s, p50/p99, errors;
#   - prerank loadtest (open loop at RATE_FRACTION of the F32 wrk throughput): p50/p99/p999;
# then posts every body to both servers and compares the answers (recall@100 of I8 + rescore
# against F32, largest probability difference of the items both return).
#
# Usage: scripts/loadtest-spec.sh [PRERANK_BINARY] [WORLD_DIR]
#   env: SECONDS_PER_RUN (15), RATE_FRACTION (0.7), WRK_THREADS (2), WRK_CONNECTIONS (4),
#        INDEXES ("index-f32.safetensors index-i8r.safetensors")
# Output: a table on stdout; raw outputs under /tmp/prerank-spec-e2e.
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
SECS="${SECONDS_PER_RUN:-15}"
FRACTION="${RATE_FRACTION:-0.7}"
INDEXES="${INDEXES:-index-f32.safetensors index-i8r.safetensors}"   # which of the world's indexes to serve
command -v wrk >/dev/null || { echo "loadtest-spec: wrk is not installed (scripts/setup-test.sh)" >&2; exit 2; }
scripts/spec-world.sh "$BIN" "$WORLD"
OUT=/tmp/prerank-spec-e2e
rm -rf "$OUT" && mkdir -p "$OUT"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export BODIES="$WORLD/bodies.jsonl"
PID=""
stop() { [ -n "$PID" ] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; PID=""; }
trap stop EXIT

serve() {   # $1 = index file name
    cat > "$OUT/prerank.yaml" <<YAML
server: {host: 127.0.0.1, port: $PORT}
model: {dir: $WORLD/model, index: $WORLD/$1}
logging: {level: warning}
YAML
    OPENBLAS_NUM_THREADS=1 "$BIN" serve --config "$OUT/prerank.yaml" > "$OUT/serve-$1.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 900); do
        curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$PID" 2>/dev/null || { cat "$OUT/serve-$1.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "loadtest-spec: the server did not get ready" >&2; exit 1
}

answers() {   # $1 = label: every body once, answers one per line
    "$PY" - "$PORT" "$BODIES" > "$OUT/answers-$1.jsonl" <<'PY'
import http.client, json, sys
port, bodies = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for line in open(bodies):
    if not line.strip():
        continue
    body = json.loads(line)
    body["debug"] = True
    conn.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    print(r.read().decode())
PY
}

# Server CPU (utime + stime from /proc) and the /metrics stage sums around a run: CPU per
# answered request, and the wall time of the timed stages (parse ... encode) per request. The
# stage timers are wall clocks: with wrk on the same cores a worker is preempted inside a stage,
# so the two cannot be subtracted to isolate the HTTP layer; compare CPU per request across runs.
snapshot() {   # $1 = output JSON
    "$PY" - "$PID" "$PORT" > "$1" <<'PY'
import json, os, re, sys, urllib.request
pid, port = sys.argv[1], sys.argv[2]
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
stages = sum(float(v) for v in re.findall(r'^prerank_stage_duration_seconds_sum\{stage="[^"]+"\} (\S+)', text, re.M))
ok = sum(float(v) for v in re.findall(r'^prerank_requests_total\{route="/prerank",code="200"[^}]*\} (\S+)', text, re.M))
print(json.dumps({"cpu": cpu, "stages": stages, "ok": ok}))
PY
}
cpu_per_request() {   # $1 $2 = snapshots: "cpu_ms stage_wall_ms" per answered request
    "$PY" - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
n = max(1, b["ok"] - a["ok"])
cpu, st = (b["cpu"] - a["cpu"]) / n * 1e3, (b["stages"] - a["stages"]) / n * 1e3
print(f"{cpu:.2f} {st:.2f}")
PY
}

declare -A WRK LT CPU
for idx in $INDEXES; do
    serve "$idx"
    LOAD=(wrk -t"${WRK_THREADS:-2}" -c"${WRK_CONNECTIONS:-4}" --timeout 5s -s scripts/reload-storm.lua "http://127.0.0.1:$PORT")
    "${LOAD[@]}" -d3s > /dev/null   # warm-up
    snapshot "$OUT/before-$idx.json"
    WRK[$idx]="$("${LOAD[@]}" -d"${SECS}s" | tee "$OUT/wrk-$idx.txt" | grep '^RESULT')"
    snapshot "$OUT/after-$idx.json"
    CPU[$idx]="$(cpu_per_request "$OUT/before-$idx.json" "$OUT/after-$idx.json")"
    if [ "$idx" = index-f32.safetensors ]; then
        requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"${WRK[$idx]}")"
        RATE="$("$PY" -c "print(max(10, round($requests / $SECS * $FRACTION)))")"
    fi
    "$BIN" loadtest --url "http://127.0.0.1:$PORT/prerank" --requests "$BODIES" --rate "$RATE" --duration "$SECS" \
        --json > "$OUT/loadtest-$idx.json"
    LT[$idx]="$("$PY" -c "
import json; r = json.load(open('$OUT/loadtest-$idx.json'))
s = r['steps'][0]
print(f\"{s['achievedRate']:.0f} {s['p50Ms']:.2f} {s['p99Ms']:.2f} {s['p999Ms']:.2f} {sum(s['errors'].values())}\")
")"
    answers "$idx"
    stop
done

field() { sed -E "s/.*$2=([0-9.]+).*/\1/" <<<"$1"; }
echo "$(date -u +%Y-%m-%dT%H:%MZ) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "SPEC-scale world: $("$PY" -c "import json; print(json.load(open('$WORLD/model/model.json'))['version'])"), 1M items, T = 3, d = 64, 10k random candidates, k = 100, $(nproc) cores (server and load share them)"
printf '| index | wrk req/s | wrk p50 ms | wrk p99 ms | non-200 | socket errors | open-loop rate | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for idx in $INDEXES; do
    r="${WRK[$idx]}"
    read -r lrate lp50 lp99 lp999 lerr <<<"${LT[$idx]}"
    printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$idx" \
        "$("$PY" -c "print($(field "$r" requests) / $SECS)")" "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" \
        "$(field "$r" non200)" "$(field "$r" socket_errors)" "$lrate" "$lp50" "$lp99" "$lp999" "$lerr"
done
echo
echo "| index | server CPU ms per answered request (all threads) | wall ms in the timed stages per request |"
echo "|---|---:|---:|"
for idx in $INDEXES; do
    read -r c st <<<"${CPU[$idx]}"
    echo "| $idx | $c | $st |"
done
[ -f "$OUT/answers-index-f32.safetensors.jsonl" ] && [ -f "$OUT/answers-index-i8r.safetensors.jsonl" ] || exit 0
"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
a = [json.loads(l) for l in open(f"{out}/answers-index-f32.safetensors.jsonl")]
b = [json.loads(l) for l in open(f"{out}/answers-index-i8r.safetensors.jsonl")]
recall, delta = [], 0.0
for x, y in zip(a, b):
    ids = {i["id"]: i for i in x["items"]}
    recall.append(sum(i["id"] in ids for i in y["items"]) / max(1, len(x["items"])))
    for i in y["items"]:
        if i["id"] in ids:
            delta = max(delta, max(abs(i["tasks"][t] - ids[i["id"]]["tasks"][t]) for t in i["tasks"]))
f32 = open(f"{out}/wrk-index-f32.safetensors.txt").read()
i8r = open(f"{out}/wrk-index-i8r.safetensors.txt").read()
req = lambda s: int(s.split("requests=")[1].split()[0])
print(f"I8 + rescore vs F32 on the same {len(recall)} bodies: recall@100 {sum(recall)/len(recall):.4f}, "
      f"max |Δp| of items both return {delta:.3g}; throughput ratio {req(i8r)/max(1, req(f32)):.2f}×")
PY
