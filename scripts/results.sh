#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: trains NSE, NSE+FR, NSE+LR, ResFlow, ResFlow+clamp and ESMM on a
# generated world over 3 seeds (50 candidates per request, so lists use K = 10), evaluates each on the held-out test.csv, and prints the table.
# Usage: scripts/results.sh [OUTDIR]   (release build; ~15 min on 2 cores; resflow --clamp is a one-word change)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/prerank-results}"
BIN="$(swift build -c release --show-bin-path)/prerank"
mkdir -p "$OUT"
[ -f "$OUT/data/train.csv" ] || "$BIN" generate --out "$OUT/data" --seed 11 --requests 3000 --quiet
for seed in 1 2 3; do
  for arch in nse nse+fr nse+lr resflow esmm; do
    name="$arch-$seed"; a="${arch%+clamp}"; clamp=""; [ "$arch" = "resflow+clamp" ] && clamp="--clamp"
    [ -f "$OUT/$name.json" ] && continue
    "$BIN" train --features "$OUT/data/features.yaml" --data "$OUT/data/train.csv" --out "$OUT/$name" \
        --arch "$a" $clamp --epochs 4 --seed "$seed" 2>/dev/null
    "$BIN" build-index --model "$OUT/$name" --items "$OUT/data/items.csv" --out "$OUT/$name.idx" 2>/dev/null
    "$BIN" eval --model "$OUT/$name" --index "$OUT/$name.idx" --data "$OUT/data/test.csv" --json --k 10 > "$OUT/$name.json"
    "$BIN" eval --model "$OUT/$name" --index "$OUT/$name.idx" --data "$OUT/data/test.csv" --json --k 10 \
        --formula multiplicative --alpha 0.2 --beta 1 --gamma 0 > "$OUT/$name.mult.json"
    echo "done $name" >&2
  done
done
python3 scripts/results_table.py "$OUT"
