#!/usr/bin/env bash
# Reproduces docs/RESULTS.md "Training to convergence (issue 25)": scripts/results_ids.sh's three
# worlds, full spec and id-free spec, several seeds and variants, JOBS runs at a time.
#
# Usage: scripts/results_converge.sh OUTDIR [VARIANT:flags ...]
#   e.g.  scripts/results_converge.sh /tmp/conv defaults: 'epochs4:--epochs 4 --id-warmup-epochs 3'
#   Each VARIANT:flags runs `prerank train` with those flags (after the defaults); "defaults:" none.
#   SEEDS (default "1 2 3"), WORLDS ("w1 w2 w3"), SPECS ("full noid"), ARCH (resflow), JOBS (1:
#   the 2-core box is shared; on a bigger machine, cores / 2: each run uses two threads),
#   TSV (default OUTDIR/runs.tsv), PRERANK_BIN as in results_ids.sh.
# The table: .venv/bin/python scripts/results_ids_table.py TSV
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/results_converge.sh OUTDIR [VARIANT:flags ...]}"; shift
[ $# -gt 0 ] || set -- "defaults:"
SEEDS="${SEEDS:-1 2 3}"; WORLDS="${WORLDS:-w1 w2 w3}"; SPECS="${SPECS:-full noid}"; ARCH="${ARCH:-resflow}"
export TSV="${TSV:-$OUT/runs.tsv}"
mkdir -p "$OUT"
# Worlds and the id-free specs first, one at a time (results_ids.sh makes them if missing).
for w in $WORLDS; do WORLDS=$w SPECS=none scripts/results_ids.sh "$OUT" "$ARCH" 1 >/dev/null; done
# The TSV header before parallel runs append to it (results_ids.sh writes it to an empty file).
[ -s "$TSV" ] || printf 'date\tnproc\tcpu\tworld\tspec\tarch\tseed\tvariant\tctr\tatcr\tctcvr\tbest_epoch\ttrain_s\tflags\n' > "$TSV"
jobs=()
for v in "$@"; do
  for s in $SEEDS; do for w in $WORLDS; do for spec in $SPECS; do
    jobs+=("$w|$spec|$s|${v%%:*}|${v#*:}")
  done; done; done
done
printf '%s\n' "${jobs[@]}" | xargs -P "${JOBS:-1}" -I{} bash -c '
  IFS="|" read -r w spec s variant flags <<< "$1"
  # shellcheck disable=SC2086
  WORLDS=$w SPECS=$spec VARIANT=$variant scripts/results_ids.sh "$2" "$3" "$s" -- $flags
' _ {} "$OUT" "$ARCH"
