#!/usr/bin/env bash
# Training throughput of both trainers on the same CSV in the same run (docs/TRAINING.md):
# `prerank bench-train` (encode pass, steps on one and two threads), then prerank_torch in one
# process and under torchrun with 2 processes (gloo), one epoch each, default model size.
#   scripts/bench-trainers.sh [ROWS]      (default 200000 rows of a generated world, seed 5)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_py  # Python runs in the project environment (scripts/setup-test.sh makes it)
ROWS="${1:-200000}"
BIN="${PRERANK_BIN:-$(swift build -c release --show-bin-path)/prerank}"
W="${BENCH_DIR:-/tmp/prerank-bench-trainers}"
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
mkdir -p "$W"
[ -f "$W/data/train.csv" ] || "$BIN" generate --out "$W/data" --seed 5 --quiet
head -n $((ROWS + 1)) "$W/data/train.csv" > "$W/train.csv"
echo "== machine: $(getconf _NPROCESSORS_ONLN) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== prerank bench-train ($ROWS rows)"
"$BIN" bench-train --features "$W/data/features.yaml" --data "$W/train.csv" --rows "$ROWS" --repeats 1 --json
for n in 1 2; do
    echo "== prerank_torch, $n process(es), 1 epoch"
    args=(--features "$W/data/features.yaml" --data "$W/train.csv" --out "$W/torch$n" --epochs 1 --no-checkpoint
          --log-every 0 --workers 1)
    if [ "$n" -eq 1 ]; then
        "$PY" -m prerank_torch train "${args[@]}" 2>&1 | grep -E "read|epoch 1:"
    else
        "$PY" -m torch.distributed.run --standalone --nproc-per-node "$n" -m prerank_torch train "${args[@]}" 2>&1 \
            | grep -E "read|epoch 1:"
    fi
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
