#!/usr/bin/env bash
# Reproduces docs/RESULTS.md "Id fields (issue 13)": full spec vs id-free spec (features.yaml
# without the two id fields) on three ~400k-row worlds, test AUC per task.
#   w1: `prerank generate`; w2: Tests/reference/otherworld.py; w3: Tests/reference/idworld.py
#   (strong per-user / per-item / user x item id-level effects, written for issue 13).
#
# Usage: scripts/results_ids.sh OUTDIR [ARCH] [SEED] [-- extra train flags]
#        scripts/results_ids.sh OUTDIR gbdt        (scripts/baselines.py --skip-lr per world)
#   PRERANK_BIN selects the binary (e.g. a build of the commit before, for the "before" column).
#   WORLDS="w1 w2 w3" and SPECS="full noid" select worlds and specs (SPECS=none: worlds only); EPOCHS (default: none
#   passed, i.e. prerank train's default: a cap of 40, stopping by validation; issue 13's tables
#   ran EPOCHS=4);
#   TSV=FILE appends one tab-separated row per run (header written if FILE is new), with the
#   date, machine (nproc, CPU model) and VARIANT (a label for the extra flags; default "defaults").
# Prints: world spec arch seed ctr atcr ctcvr best_epoch
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_py  # Python runs in the project environment (scripts/setup-test.sh makes it)
OUT="${1:?usage: scripts/results_ids.sh OUTDIR [ARCH] [SEED] [-- train flags]}"
ARCH="${2:-resflow}"; SEED="${3:-1}"; shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift
BIN="${PRERANK_BIN:-$(swift build -c release --show-bin-path)/prerank}"
WORLDS="${WORLDS:-w1 w2 w3}"; SPECS="${SPECS:-full noid}"; VARIANT="${VARIANT:-defaults}"
mkdir -p "$OUT"
gen() {
  case "$1" in
    w1) "$BIN" generate --out "$OUT/w1" --requests 8000 --seed 11 --quiet ;;
    w2) "$PY" Tests/reference/otherworld.py --out "$OUT/w2" --seed 11 --requests 8000 --candidates 50 2>/dev/null ;;
    w3) "$PY" Tests/reference/idworld.py --out "$OUT/w3" --seed 13 --requests 8000 --candidates 50 2>/dev/null ;;
  esac
}
for w in $WORLDS; do [ -f "$OUT/$w/train.csv" ] || gen "$w"; done

row() {  # world spec arch seed variant ctr atcr ctcvr best_epoch train_seconds flags
  echo "$1 $2 $3 $4 $6 $7 $8 $9"
  [ -n "${TSV:-}" ] || return 0
  if [ ! -s "$TSV" ]; then
    printf 'date\tnproc\tcpu\tworld\tspec\tarch\tseed\tvariant\tctr\tatcr\tctcvr\tbest_epoch\ttrain_s\tflags\n' > "$TSV"
  fi
  local cpu; cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%F)" "$(nproc)" "$cpu" \
    "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}" "${11}" >> "$TSV"
}

if [ "$ARCH" = gbdt ]; then
  # LightGBM with target-encoded ids and user x item crosses (one core); also the truth AUC.
  for w in $WORLDS; do
    t0=$(date +%s)
    "$PY" scripts/baselines.py "$OUT/$w" --skip-lr > "$OUT/$w-gbdt.md" 2> "$OUT/$w-gbdt.log"
    s=$(( $(date +%s) - t0 ))
    read -r g1 g2 g3 t1 t2 t3 < <("$PY" - "$OUT/$w-gbdt.md" <<'PY'
import sys
r = {c[1].strip(): c for c in (l.split("|") for l in open(sys.argv[1])) if len(c) > 5}
print(*[r[k][3].strip() for k in ("click", "cart", "order")], *[r[k][5].strip() for k in ("click", "cart", "order")])
PY
)
    row "$w" full gbdt 1 baselines "$g1" "$g2" "$g3" - "$s" "--skip-lr"
    row "$w" full truth - generator "$t1" "$t2" "$t3" - 0 -
  done
  exit 0
fi

for w in $WORLDS; do
  [ -f "$OUT/$w/noid.yaml" ] || "$PY" - "$OUT/$w/features.yaml" "$OUT/$w/noid.yaml" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
d["features"] = [f for f in d["features"] if f["name"] not in ("user_id", "uid", "item_id")]
yaml.safe_dump(d, open(sys.argv[2], "w"))
PY
  for spec in $SPECS; do
    case "$spec" in full|noid) ;; *) continue ;; esac  # SPECS=none: make the world only
    f="$OUT/$w/features.yaml"; [ "$spec" = noid ] && f="$OUT/$w/noid.yaml"
    m="$OUT/$w-$spec-$ARCH-$SEED-$VARIANT"
    t0=$(date +%s)
    "$BIN" train --features "$f" --data "$OUT/$w/train.csv" --out "$m" --arch "$ARCH" ${EPOCHS:+--epochs "$EPOCHS"} --seed "$SEED" "$@" 2> "$m.log"
    s=$(( $(date +%s) - t0 ))
    "$BIN" build-index --model "$m" --items "$OUT/$w/items.csv" --out "$m.idx" 2>/dev/null
    "$BIN" eval --model "$m" --index "$m.idx" --data "$OUT/$w/test.csv" --json --k 20 2>/dev/null > "$m.json"
    rm -f "$m.idx"
    read -r a1 a2 a3 be < <("$PY" -c 'import json,sys; t=json.load(open(sys.argv[1]))["tasks"]; tr=json.load(open(sys.argv[2]))["training"]
print(*["%.4f" % t[k]["auc"] for k in ("ctr","atcr","ctcvr")], "%s/%s" % (tr["best_epoch"], tr["epochs_run"]) + ("" if tr.get("stopped", "patience") == "patience" else "cap"))' "$m.json" "$m/model.json")
    row "$w" "$spec" "$ARCH" "$SEED" "$VARIANT" "$a1" "$a2" "$a3" "$be" "$s" "${EPOCHS:+--epochs $EPOCHS }$*"
  done
done
