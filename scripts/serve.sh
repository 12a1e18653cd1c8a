#!/usr/bin/env bash
# The serve command (README "Quick start"): installs the Debian packages the build needs (no
# Python), builds in release mode, makes the demo model with the Swift binary when none exists
# (generate -> train -> build-index), then serves on 127.0.0.1:8080 with config/prerank.yaml.
# Extra arguments go to `prerank serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-build.sh
source scripts/lib.sh
swift build -c release --product prerank
BIN="$(swift build -c release --show-bin-path)/prerank"

if [ ! -f demo/model/model.json ] || [ ! -f demo/index.safetensors ]; then
    echo "serve: no demo model yet; making one (generate -> train -> build-index, about 20 seconds)" >&2
    scripts/make-demo.sh "$BIN"
fi

export OPENBLAS_NUM_THREADS=1
exec "$BIN" serve --config config/prerank.yaml "$@"
