"""`prerank train` on a world written by an independent generator (otherworld.py): other field
names and kinds, columns in another order, an unknown column, integer categorical values, empty
cells. The trained model must learn (beat a constant by a margin on every task), load in
build-index and eval, and eval's AUC must equal numpy's AUC of eval's own --predictions.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run
from otherworld import auc

HERE = Path(__file__).parent
LABELS = {"ctr": "click", "atcr": "cart", "ctcvr": "order"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("otherworld")
    subprocess.run([sys.executable, str(HERE / "otherworld.py"), "--out", str(out), "--seed", "4", "--requests", "3000",
                    "--users", "1500", "--items", "4000"], check=True, capture_output=True)
    return out


def test_resflow_learns_an_unseen_world_and_eval_agrees_with_its_predictions(prerank, world, tmp_path):
    model, index, preds = tmp_path / "m", tmp_path / "m.idx", tmp_path / "p.csv"
    run(prerank, "train", "--features", world / "features.yaml", "--data", world / "train.csv", "--out", model,
        "--arch", "resflow", "--epochs", 3, "--seed", 2)
    run(prerank, "build-index", "--model", model, "--items", world / "items.csv", "--out", index)
    report = json.loads(run(prerank, "eval", "--model", model, "--index", index, "--data", world / "test.csv",
                            "--json", "--k", 10, "--predictions", preds).stdout)

    with open(world / "test.csv", newline="") as f:
        test = list(csv.DictReader(f))
    with open(preds, newline="") as f:
        predicted = list(csv.DictReader(f))
    assert len(predicted) == len(test) == report["rows"]
    # Predictions are written in test-file order, one per impression.
    assert [(p["request_id"], p["item_id"]) for p in predicted] == [(t["request_id"], t["item_id"]) for t in test]
    for task, label in LABELS.items():
        y = np.array([int(t[label]) for t in test])
        p = np.array([float(r[task]) for r in predicted])
        truth = np.array([float(t[f"truth_{label}"]) for t in test])
        assert report["tasks"][task]["auc"] == pytest.approx(auc(p, y), abs=1e-9)
        # It learnt the world: well above chance, and not above what the true probabilities reach.
        assert report["tasks"][task]["auc"] > 0.7, (task, report["tasks"][task])
        assert report["tasks"][task]["auc"] < auc(truth, y) + 0.02
    for r in predicted:
        for task in LABELS:
            assert 0 < float(r[task]) < 1
