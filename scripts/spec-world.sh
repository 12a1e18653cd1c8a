#!/usr/bin/env bash
# Builds the SPEC-scale world that performance figures are measured on (docs/PERFORMANCE.md):
# a 1M-item catalog, a ResFlow model with T = 3 tasks and d = 64 trained on it, and its index in
# F32 and in I8 with F32 rescore rows, plus 64 distinct 10k-random-candidate request bodies.
# The quick start keeps the small demo; this world does not fit in cache, which is the point.
#
# Usage: scripts/spec-world.sh [PRERANK_BINARY] [DIR]     (default DIR: /tmp/prerank-spec)
# Reuses what is already there; delete DIR to rebuild. About 2 minutes on 2 cores, ~1.5 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-$(swift build -c release --show-bin-path)/prerank}"
DIR="${2:-/tmp/prerank-spec}"
mkdir -p "$DIR"

if [ ! -f "$DIR/data/items.csv" ]; then
    "$BIN" generate --out "$DIR/data.tmp" --seed 11 --items 1000000 --users 50000 --queries 5000 \
        --requests 20000 --candidates 50 --quiet
    rm -rf "$DIR/data" && mv "$DIR/data.tmp" "$DIR/data"
fi
if [ ! -f "$DIR/model/model.json" ]; then
    "$BIN" train --features "$DIR/data/features.yaml" --data "$DIR/data/train.csv" --out "$DIR/model.tmp" \
        --arch resflow --d 64 --epochs 1 --seed 11 --version spec-resflow-d64
    rm -rf "$DIR/model" && mv "$DIR/model.tmp" "$DIR/model"
fi
if [ ! -f "$DIR/index-f32.safetensors" ]; then
    "$BIN" build-index --model "$DIR/model" --items "$DIR/data/items.csv" --out "$DIR/index-f32.tmp" --dtype f32
    mv "$DIR/index-f32.tmp" "$DIR/index-f32.safetensors"
fi
if [ ! -f "$DIR/index-i8r.safetensors" ]; then
    "$BIN" build-index --model "$DIR/model" --items "$DIR/data/items.csv" --out "$DIR/index-i8r.tmp" --dtype i8 --rescore
    mv "$DIR/index-i8r.tmp" "$DIR/index-i8r.safetensors"
fi
if [ ! -f "$DIR/bodies.jsonl" ]; then
    "$BIN" loadtest --model "$DIR/model" --index "$DIR/index-f32.safetensors" --candidates 10000 --bodies 64 \
        --k 100 --seed 11 --write-requests "$DIR/bodies.tmp" --rate 1 --duration 1 --warmup 0 \
        --url http://127.0.0.1:9/prerank > /dev/null 2>&1 || true
    [ -s "$DIR/bodies.tmp" ] && mv "$DIR/bodies.tmp" "$DIR/bodies.jsonl"
fi
echo "spec-world: $DIR/{model,index-f32.safetensors,index-i8r.safetensors,bodies.jsonl}" >&2
