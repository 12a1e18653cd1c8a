#!/usr/bin/env bash
# The test command (README "Quick start"): installs what is missing, builds, runs the Swift
# unit tests and the Python reference/end-to-end tests against the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== swift build (release)" >&2
# prerank_build_info{commit} (Package.swift reads it; "unknown" outside a git checkout).
export PRERANK_GIT_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
swift build -c release --product prerank
export PRERANK_BIN="$(swift build -c release --show-bin-path)/prerank"

echo "== swift test" >&2
swift test --parallel --num-workers 2

echo "== reference and end-to-end tests (pytest)" >&2
# python/ (prerank_torch) for the trainer tests, their subprocesses and torchrun.
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pytest -q Tests/reference Tests/deploy "$@"

# The kernel is chosen at run time (AVX2 or portable C); the numeric reference tests and the
# kernel unit tests run again on the portable path, which a CPU without AVX2/FMA/F16C would use.
echo "== numeric reference tests and kernel tests with PRERANK_KERNEL=scalar" >&2
PRERANK_KERNEL=scalar python3 -m pytest -q Tests/reference/test_model_core.py Tests/reference/test_rescore.py "$@"
PRERANK_KERNEL=scalar swift test --filter 'KernelTests|Int8KernelTests|KernelDispatchTests|ItemIndexTests'
