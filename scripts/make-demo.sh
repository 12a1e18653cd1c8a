#!/usr/bin/env bash
# Makes the demo world, model and index under demo/ (ignored by git).
# Usage: scripts/make-demo.sh [PRERANK_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-$(swift build -c release --show-bin-path)/prerank}"

mkdir -p demo
"$BIN" generate --out demo/data --seed 7 --requests 8000
"$BIN" train --features demo/data/features.yaml --data demo/data/train.csv --out demo/model.tmp \
    --arch resflow --epochs 3 --seed 7 --version demo-resflow
"$BIN" build-index --model demo/model.tmp --items demo/data/items.csv --out demo/index.safetensors.tmp
rm -rf demo/model
mv demo/model.tmp demo/model
mv demo/index.safetensors.tmp demo/index.safetensors
echo "demo: model in demo/model, index in demo/index.safetensors" >&2
