#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: on one generated world, trains NSE, NSE+FR, NSE+LR, ResFlow and
# ESMM over seeds 1-3, evaluates each on the held-out test.csv (additive and multiplicative
# fusion, WR@100 of 400 candidates) and prints the table.
#
# Usage: scripts/results.sh OUTDIR [prerank|otherworld]
#   prerank     `prerank generate` (docs/GENERATOR.md): 2,500 requests x 400 candidates = 1M rows
#   otherworld  Tests/reference/otherworld.py, an independent generator with other fields and
#               another latent structure: 2,000 requests x 400 candidates = 800k rows
# Release build; about 25 minutes per world on 2 cores. Reruns skip finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_py  # Python runs in the project environment (scripts/setup-test.sh makes it)
OUT="${1:?usage: scripts/results.sh OUTDIR [prerank|otherworld]}"
WORLD="${2:-prerank}"
BIN="${PRERANK_BIN:-$(swift build -c release --show-bin-path)/prerank}"
EPOCHS="${EPOCHS:-4}"
mkdir -p "$OUT"
if [ ! -f "$OUT/data/train.csv" ]; then
  case "$WORLD" in
    prerank) "$BIN" generate --out "$OUT/data" --seed 11 --requests 2500 --candidates 400 --quiet ;;
    otherworld) "$PY" Tests/reference/otherworld.py --out "$OUT/data" --seed 11 --requests 2000 --candidates 400 ;;
    *) echo "unknown world $WORLD (prerank or otherworld)" >&2; exit 64 ;;
  esac
fi
for seed in 1 2 3; do
  for arch in nse nse+fr nse+lr resflow esmm; do
    name="$arch-$seed"
    [ -f "$OUT/$name.mult.json" ] && continue
    "$BIN" train --features "$OUT/data/features.yaml" --data "$OUT/data/train.csv" --out "$OUT/$name" \
        --arch "$arch" --epochs "$EPOCHS" --seed "$seed" 2> "$OUT/$name.log"
    "$BIN" build-index --model "$OUT/$name" --items "$OUT/data/items.csv" --out "$OUT/$name.idx" 2>/dev/null
    "$BIN" eval --model "$OUT/$name" --index "$OUT/$name.idx" --data "$OUT/data/test.csv" --json --k 100 \
        2>/dev/null > "$OUT/$name.json"
    "$BIN" eval --model "$OUT/$name" --index "$OUT/$name.idx" --data "$OUT/data/test.csv" --json --k 100 \
        --formula multiplicative --alpha 0.2 --beta 1 --gamma 0 2>/dev/null > "$OUT/$name.mult.json"
    echo "done $name" >&2
  done
done
"$PY" scripts/results_table.py "$OUT"
