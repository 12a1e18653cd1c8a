#!/usr/bin/env bash
# Installs what the test command needs on top of scripts/setup-build.sh: Debian test tools, and
# the project's own Python environment (.venv, or $PRERANK_VENV) from the committed locks.
#
# The environment is made with `python3 -m venv` (no system site packages) and filled with
# `pip install --no-deps -r requirements/test.lock`: exact versions, and nothing the machine's
# python3 already has can change what is installed. It is remade when the lock or the base
# interpreter changes (a stamp file records both). Regenerate the locks: scripts/lock-python.sh.
# Use it by hand: `source .venv/bin/activate` (or call .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-build.sh
source scripts/lib.sh
# Test tools: the openssl CLI (test_tls.py), wrk (load scripts), promtool from `prometheus`
# (test_ops_truth.py checks /metrics with it).
apt_install openssl wrk prometheus

VENV="${PY%/bin/python}"
LOCK=requirements/test.lock
# A Debian python3 needs python3-venv for `-m venv` (ensurepip); pyenv's has it built in.
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt_install python3-venv
fi
# Made anew only when missing or when the base interpreter changed; otherwise synced in place
# with the lock (pip skips what is already at the pinned version), so a changed lock costs only
# the packages that changed.
base="$(python3 -c 'import sys; print(sys.version.split()[0], getattr(sys, "_base_executable", sys.executable))')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.prerank-base" 2>/dev/null)" != "$base" ]; then
    echo "setup: making the Python environment $VENV" >&2
    python3 -m venv --clear "$VENV" || { echo "setup: python3 -m venv $VENV failed (see above)" >&2; exit 1; }
    echo "$base" > "$VENV/.prerank-base"
fi
stamp="$(sha256sum "$LOCK" | cut -c1-16)"
[ "$(cat "$VENV/.prerank-lock" 2>/dev/null)" = "$stamp" ] && exit 0
rm -f "$VENV/.prerank-lock"
echo "setup: installing $LOCK into $VENV (pytest, numpy, torch, ...; a few minutes the first time)" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$LOCK" >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install of the Python test tools from $LOCK failed (see above)" >&2
    exit 1
fi
# The environment holds the lock and nothing else: what an earlier lock installed goes.
extras="$("$VENV/bin/python" - "$LOCK" <<'PY'
import re, sys
from importlib.metadata import distributions
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
locked = {norm(l.split("==")[0]) for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")}
print(" ".join(sorted({norm(d.metadata["Name"]) for d in distributions()} - locked - {"pip"})))
PY
)"
if [ -n "$extras" ]; then
    "$VENV/bin/python" -m pip uninstall -q -y $extras >&2
fi
# The lock is complete (every dependency pinned); pip check proves it on this machine.
"$VENV/bin/python" -m pip check >&2 || { echo "setup: $LOCK is not self-consistent (pip check above); regenerate it with scripts/lock-python.sh" >&2; exit 1; }
"$VENV/bin/python" -c "import numpy, safetensors, pytest, openapi_spec_validator, openapi_core, yaml, kubernetes_validate, sslyze, promql_parser, torch, pyarrow" \
    || { echo "setup: Python test tools still missing after pip install" >&2; exit 1; }
echo "$stamp" > "$VENV/.prerank-lock"
