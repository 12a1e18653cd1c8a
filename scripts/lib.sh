# Shared by the scripts (sourced, not run). Defines:
#   apt_install PKG...   installs the Debian packages that are not installed yet (root or sudo)
#   PY                   the project environment's interpreter (.venv/bin/python, or
#                        $PRERANK_VENV/bin/python); scripts run Python only through it
#   need_py              fails with a one-line reason when that environment is not set up
# and exports PRERANK_GIT_COMMIT, the commit prerank_build_info{commit} reports (Package.swift
# reads it; "unknown" outside a git checkout). Every script that builds sets the same value, so
# scripts/serve.sh after scripts/test.sh (or inside its doc test) does not rebuild.
PRERANK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PRERANK_GIT_COMMIT="${PRERANK_GIT_COMMIT:-$(git -C "$PRERANK_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
PY="${PRERANK_VENV:-$PRERANK_ROOT/.venv}/bin/python"

apt_install() {
    local need=() pkg sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    [ "${#need[@]}" -eq 0 ] && return 0
    echo "setup: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    # --no-install-recommends: e.g. promtool is all the tests need from the prometheus package.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

need_py() {
    [ -x "$PY" ] || { echo "Error: no project Python environment at ${PY%/bin/python}; run scripts/setup-test.sh first" >&2; exit 1; }
}
