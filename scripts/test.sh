#!/usr/bin/env bash
# The test command (README "Quick start"): installs what is missing (scripts/setup-test.sh: Debian
# test tools and the project's Python environment from requirements/test.lock), builds, runs the
# Swift unit tests and the Python reference/end-to-end tests against the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test.sh
source scripts/lib.sh
# The project environment first on PATH: its python, and the tools it installs (hadolint).
export VIRTUAL_ENV="${PY%/bin/python}"
export PATH="$VIRTUAL_ENV/bin:$PATH"

echo "== swift build (release)" >&2
swift build -c release --product prerank
export PRERANK_BIN="$(swift build -c release --show-bin-path)/prerank"

echo "== swift test" >&2
swift test --parallel --num-workers 2

# The demo model the quick-start doc test serves (made once; scripts/serve.sh reuses it).
if [ ! -f demo/model/model.json ] || [ ! -f demo/index.safetensors ]; then
    scripts/make-demo.sh "$PRERANK_BIN"
fi

echo "== reference and end-to-end tests (pytest)" >&2
# python/ (prerank_torch) for the trainer tests, their subprocesses and torchrun.
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -m pytest -q Tests/reference Tests/deploy "$@"

# The kernel is chosen at run time (AVX2 or portable C); the numeric reference tests and the
# kernel unit tests run again on the portable path, which a CPU without AVX2/FMA/F16C would use.
echo "== numeric reference tests and kernel tests with PRERANK_KERNEL=scalar" >&2
PRERANK_KERNEL=scalar "$PY" -m pytest -q Tests/reference/test_model_core.py Tests/reference/test_rescore.py "$@"
PRERANK_KERNEL=scalar swift test --filter 'KernelTests|Int8KernelTests|KernelDispatchTests|ItemIndexTests'
