#!/usr/bin/env bash
# Installs the Debian packages that building and serving prerank need, and nothing else: no
# Python (scripts/serve.sh runs this; scripts/setup-test.sh adds the test tools on top).
# Idempotent: skips what is already there. Needs root (or sudo) for apt-get.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# OpenBLAS (+ its Fortran runtime), zlib, OpenSSL 3 headers, found by pkg-config; curl for the
# README's example request.
apt_install libopenblas-dev libgfortran5 zlib1g-dev libssl-dev pkg-config curl
