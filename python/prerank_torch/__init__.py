"""prerank_torch: a PyTorch trainer for prerank's twin-tower ResFlow models (SPEC §1, §3).

`python3 -m prerank_torch train ...` trains in one process; `torchrun --nproc-per-node N -m
prerank_torch train ...` trains data-parallel. Both write the model directory (model.json +
weights.safetensors) that `prerank build-index`, `score`, `eval` and `serve` load unchanged.
"""
from .errors import InputError

__all__ = ["InputError"]
