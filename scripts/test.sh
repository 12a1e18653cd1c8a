#!/usr/bin/env bash
# The test command (README "Quick start"): installs what is missing, builds, runs the Swift
# unit tests and the Python reference/end-to-end tests against the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== swift build (release)" >&2
swift build -c release --product prerank
export PRERANK_BIN="$(swift build -c release --show-bin-path)/prerank"

echo "== swift test" >&2
swift test --parallel --num-workers 2

echo "== reference and end-to-end tests (pytest)" >&2
# python/ (prerank_torch) for the trainer tests, their subprocesses and torchrun.
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pytest -q Tests/reference Tests/deploy "$@"
