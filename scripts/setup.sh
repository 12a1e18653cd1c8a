#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, serve and test prerank.
# Idempotent: skips what is already there. Needs root (or sudo) for apt-get.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

need_apt=()
for pkg in libopenblas-dev libgfortran5 zlib1g-dev libssl-dev pkg-config openssl curl wrk; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python tools for the reference tests (numpy reference, official safetensors, OpenAPI validator)
# and for the PyTorch trainer in python/ (torch — CPU or CUDA wheels from PyPI —, pyarrow).
# A pip failure stops setup (set -e) with pip's own message. python/ itself needs no install:
# scripts/test.sh puts it on PYTHONPATH (`pip install -e python/` for everyday use).
py_missing=0
python3 -c "import numpy, safetensors, pytest, openapi_spec_validator, yaml, kubernetes_validate, torch, pyarrow" >/dev/null 2>&1 || py_missing=1
if [ "$py_missing" -eq 1 ]; then
    echo "setup: installing Python test tools, torch and pyarrow" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check numpy safetensors pytest \
        openapi-spec-validator pyyaml kubernetes-validate torch pyarrow
fi
