#!/usr/bin/env bash
# GPU smoke test of the PyTorch trainer (docs/TRAINING.md "PyTorch trainer", issue 24).
#   scripts/gpu-smoke.sh [REQUESTS]        (default 6000 requests x 40 candidates of otherworld.py)
# Generates a small world with Tests/reference/otherworld.py (numpy only: no Swift toolchain, no
# network), trains it on the CPU, on the GPU (--device cuda) and on the GPU under bf16 autocast
# (--amp bf16), prints each run's rows/s and test AUC per task, and fails (exit 1) when a GPU
# run's AUC is more than 0.002 from the CPU run's on any task. Without a CUDA device it prints
# one "skip" line and exits 0. Needs python3 with torch, numpy, safetensors, pyyaml, pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS="${1:-6000}"
# The project environment where there is one (scripts/setup-test.sh); a GPU machine's own python3
# with torch otherwise (it has no Swift toolchain and no project .venv), or $PYTHON.
PY="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-smoke: skip: no CUDA device ($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo "no torch"))"
    exit 0
fi
W="$(mktemp -d /tmp/prerank-gpu-smoke.XXXXXX)"
trap 'rm -rf "$W"' EXIT
"$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"gpu-smoke: {p.name}, {p.total_memory >> 30} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")'
echo "gpu-smoke: machine: $(getconf _NPROCESSORS_ONLN) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" Tests/reference/otherworld.py --out "$W/world" --requests "$REQUESTS" --seed 1 2>&1 | grep -E "rows:|label rates" | sed 's/^/gpu-smoke: /'

common=(--features "$W/world/features.yaml" --data "$W/world/train.csv" --epochs 2 --batch 2048 --seed 1
        --hidden 64,32 --dim 32 --no-checkpoint --log-every 0 --workers 0)
train() {  # name, extra flags...
    local name="$1"; shift
    "$PY" -m prerank_torch train "${common[@]}" --out "$W/$name" "$@" 2> "$W/$name.log" || { cat "$W/$name.log"; exit 1; }
    grep -E "train: epoch [0-9]+:" "$W/$name.log" | tail -1 | sed "s/^/gpu-smoke: $name: /"
}
train cpu --device cpu
train cuda --device cuda
train cuda-bf16 --device cuda --amp bf16

"$PY" - "$W" <<'PYEOF'
"""Test AUC of every run's exported model on the world's test.csv; GPU runs within 0.002 of the CPU run."""
import re
import sys

import numpy as np
import torch

from prerank_torch.data import Encoder, iterate_blocks, to_batch
from prerank_torch.metrics import auc
from prerank_torch.model import TwinTower

w = sys.argv[1]
runs = ["cpu", "cuda", "cuda-bf16"]
result, rates = {}, {}
for name in runs:
    model = TwinTower.load(f"{w}/{name}").eval()
    enc = Encoder(model.tasks, model.features)
    probs, labels = [], []
    with torch.no_grad():
        for block, _ in iterate_blocks([f"{w}/world/test.csv"], enc, 0, 1, 0.0, "all", chunk=8192):
            b = to_batch(block, len(model.tasks))
            probs.append(model.probabilities(b).double().numpy())
            labels.append(b["labels"].numpy())
    p, y = np.concatenate(probs), np.concatenate(labels)
    result[name] = {t["name"]: auc(p[:, k], y[:, k]) for k, t in enumerate(model.tasks)}
    last = [l for l in open(f"{w}/{name}.log") if re.search(r"train: epoch \d+:", l)][-1]
    rates[name] = float(re.search(r"([0-9.]+) rows/s", last).group(1))
    print(f"gpu-smoke: {name}: {rates[name]:.0f} rows/s (last epoch), test AUC " +
          ", ".join(f"{t} {a:.4f}" for t, a in result[name].items()) + f" on {len(p)} rows")
bad = []
for name in runs[1:]:
    for t, a in result[name].items():
        gap = abs(a - result["cpu"][t])
        if gap > 0.002:
            bad.append(f"{name} {t} {a:.4f} vs cpu {result['cpu'][t]:.4f} (gap {gap:.4f})")
print(f"gpu-smoke: speed-up of cuda over cpu: {rates['cuda'] / rates['cpu']:.1f}x, cuda-bf16 {rates['cuda-bf16'] / rates['cpu']:.1f}x")
if bad:
    print("gpu-smoke: FAIL: AUC more than 0.002 from the CPU run: " + "; ".join(bad))
    sys.exit(1)
print("gpu-smoke: OK: every GPU AUC within 0.002 of the CPU run")
PYEOF
