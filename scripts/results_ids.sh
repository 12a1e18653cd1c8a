#!/usr/bin/env bash
# Reproduces docs/RESULTS.md "Id fields (issue 13)": full spec vs id-free spec (features.yaml
# without the two id fields) on three ~400k-row worlds, test AUC per task.
#
# Usage: scripts/results_ids.sh OUTDIR [ARCH] [SEED] [-- extra train flags]
#   PRERANK_BIN selects the binary (e.g. a build of the commit before, for the "before" column).
# Prints: world spec arch seed ctr atcr ctcvr best_epoch
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/results_ids.sh OUTDIR [ARCH] [SEED] [-- train flags]}"
ARCH="${2:-resflow}"; SEED="${3:-1}"; shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift
BIN="${PRERANK_BIN:-$(swift build -c release --show-bin-path)/prerank}"
mkdir -p "$OUT"
[ -f "$OUT/w1/train.csv" ] || "$BIN" generate --out "$OUT/w1" --requests 8000 --seed 11 --quiet
[ -f "$OUT/w2/train.csv" ] || python3 Tests/reference/otherworld.py --out "$OUT/w2" --seed 11 --requests 8000 --candidates 50 >/dev/null
[ -f "$OUT/w3/train.csv" ] || "$BIN" generate --out "$OUT/w3" --requests 8000 --users 600 --items 2500 --seed 13 --quiet
for w in w1 w2 w3; do
  python3 - "$OUT/$w/features.yaml" "$OUT/$w/noid.yaml" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
d["features"] = [f for f in d["features"] if f["name"] not in ("user_id", "uid", "item_id")]
yaml.safe_dump(d, open(sys.argv[2], "w"))
PY
  for spec in full noid; do
    f="$OUT/$w/features.yaml"; [ "$spec" = noid ] && f="$OUT/$w/noid.yaml"
    m="$OUT/$w-$spec-$ARCH-$SEED"
    "$BIN" train --features "$f" --data "$OUT/$w/train.csv" --out "$m" --arch "$ARCH" --epochs "${EPOCHS:-4}" --seed "$SEED" "$@" 2> "$m.log"
    "$BIN" build-index --model "$m" --items "$OUT/$w/items.csv" --out "$m.idx" 2>/dev/null
    "$BIN" eval --model "$m" --index "$m.idx" --data "$OUT/$w/test.csv" --json --k 100 2>/dev/null > "$m.json"
    python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tasks"]; b=json.load(open(sys.argv[2]))["training"]["best_epoch"]
print(*sys.argv[3:], *["%.4f" % t[k]["auc"] for k in ("ctr","atcr","ctcvr")], b)' "$m.json" "$m/model.json" "$w" "$spec" "$ARCH" "$SEED"
  done
done
