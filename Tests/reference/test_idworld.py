"""idworld.py, the world with strong per-id effects (issue 13): files of SPEC §3, progressive
labels, determinism; the ids carry signal (the truth beats the attribute-only oracle and an
id-free `prerank train` model by a margin); `prerank train` / `build-index` / `eval` take the files.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run

SCRIPT = Path(__file__).parent / "idworld.py"
TINY = ["--requests", "800", "--candidates", "20", "--users", "150", "--items", "400"]
LABELS = {"ctr": "click", "atcr": "cart", "ctcvr": "order"}


def generate(out, *extra):
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *TINY, *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return out


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("idworld"), "--seed", "3")


def test_files_labels_and_catalog(world):
    spec = yaml.safe_load((world / "features.yaml").read_text())
    assert spec["tasks"] == [{"name": t, "label": l} for t, l in LABELS.items()]
    names = [f["name"] for f in spec["features"]]
    assert {"user_id", "item_id"} <= set(names)
    # id fields are detected as such by `prerank train` (categorical, >= 5000 buckets)
    assert all(f["buckets"] >= 5000 for f in spec["features"] if f["name"].endswith("_id"))
    item_fields = [f["name"] for f in spec["features"] if f["side"] == "item"]
    items = rows(world / "items.csv")
    assert list(items[0].keys()) == item_fields
    catalog = {r["item_id"] for r in items}
    requests = {}
    for name in ("train.csv", "test.csv"):
        for r in rows(world / name):
            assert set(names) <= r.keys()
            click, cart, order = (int(r[l]) for l in LABELS.values())
            assert order <= cart <= click <= 1
            truth = [float(r[f"truth_{l}"]) for l in LABELS.values()]
            assert 0 < truth[2] <= truth[1] <= truth[0] < 1
            assert r["item_id"] in catalog
            requests.setdefault(r["request_id"], set()).add(name)
    assert len(requests) == 800 and all(len(v) == 1 for v in requests.values())


def test_same_seed_same_bytes(world, tmp_path):
    again = generate(tmp_path / "again", "--seed", "3")
    other = generate(tmp_path / "other", "--seed", "4")
    train = (world / "train.csv").read_bytes()
    assert (again / "train.csv").read_bytes() == train
    assert (other / "train.csv").read_bytes() != train


def test_ids_carry_signal_beyond_the_attributes(tmp_path):
    """The truth's test AUC is well above the attribute-only oracle's (same logits, every id-level
    part replaced by its expectation given the observable fields), on every label."""
    out = generate(tmp_path / "w", "--seed", "5", "--requests", "3000", "--candidates", "30")
    t = json.loads((out / "truth.json").read_text())
    for label in LABELS.values():
        assert t["truth_auc"][label] > t["attribute_oracle_auc"][label] + 0.05, (label, t)


def test_prerank_trains_on_it_and_an_id_free_model_stays_below_the_truth(prerank, world, tmp_path):
    spec = yaml.safe_load((world / "features.yaml").read_text())
    spec["features"] = [f for f in spec["features"] if f["name"] not in ("user_id", "item_id")]
    (tmp_path / "noid.yaml").write_text(yaml.safe_dump(spec))
    truth = json.loads((world / "truth.json").read_text())["truth_auc"]
    for name, features in (("full", world / "features.yaml"), ("noid", tmp_path / "noid.yaml")):
        model, index = tmp_path / name, tmp_path / f"{name}.idx"
        run(prerank, "train", "--features", features, "--data", world / "train.csv", "--out", model,
            "--epochs", 2, "--seed", 1, "--threads", 1)
        run(prerank, "build-index", "--model", model, "--items", world / "items.csv", "--out", index)
        report = json.loads(run(prerank, "eval", "--model", model, "--index", index,
                                "--data", world / "test.csv", "--json", "--k", 10).stdout)
        ctr = report["tasks"]["ctr"]["auc"]
        assert ctr > 0.6, (name, report["tasks"])            # it learns something
        if name == "noid":
            # attributes alone leave a large part of the click signal to the ids
            assert ctr < truth["click"] - 0.05, (ctr, truth)
