"""otherworld.py, the independent synthetic world: files of SPEC §3, progressive labels, determinism.

Runs the generator at a tiny size (a fraction of a second per run); needs no prerank binary.
"""
import csv
import os
import subprocess
import sys

import pytest
import yaml

SCRIPT = os.path.join(os.path.dirname(__file__), "otherworld.py")
TINY = ["--requests", "300", "--users", "200", "--items", "800", "--candidates", "20"]
FILES = ("features.yaml", "items.csv", "train.csv", "test.csv")


def generate(out, *extra):
    p = subprocess.run([sys.executable, SCRIPT, "--out", str(out), *TINY, *extra],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stderr


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("otherworld")
    generate(out, "--seed", "3")
    return out


def test_files_and_features_yaml(world):
    for name in FILES:
        assert (world / name).is_file(), name
    spec = yaml.safe_load((world / "features.yaml").read_text())
    assert set(spec) == {"tasks", "features"}
    assert spec["tasks"] == [{"name": "ctr", "label": "click"}, {"name": "atcr", "label": "cart"},
                             {"name": "ctcvr", "label": "order"}]
    names = [f["name"] for f in spec["features"]]
    assert len(names) == len(set(names)) and "item_id" in names
    for f in spec["features"]:
        assert f["side"] in ("user", "item") and f["kind"] in ("categorical", "multi", "dense")
        if f["kind"] != "dense":
            assert f["buckets"] >= 1 and f["dim"] in (8, 16)
    # every feature is a column; session_hour is a column but deliberately not a feature
    header = rows(world / "train.csv")[0].keys()
    assert set(names) <= set(header) and "session_hour" in header and "session_hour" not in names
    item_fields = {f["name"] for f in spec["features"] if f["side"] == "item"}
    with open(world / "items.csv") as f:
        assert set(f.readline().strip().split(",")) == item_fields


def test_labels_truths_and_catalog(world):
    catalog = {r["item_id"] for r in rows(world / "items.csv")}
    requests = {}
    for name in ("train.csv", "test.csv"):
        data = rows(world / name)
        assert data, name
        for r in data:
            click, cart, order = int(r["click"]), int(r["cart"]), int(r["order"])
            assert order <= cart <= click and click in (0, 1)
            truth = [float(r[f"truth_{lab}"]) for lab in ("click", "cart", "order")]
            assert all(0 < t < 1 for t in truth) and truth[2] <= truth[1] <= truth[0]
            assert r["item_id"] in catalog
            requests.setdefault(r["request_id"], set()).add(name)
    assert all(len(files) == 1 for files in requests.values()), "a request split across train and test"
    assert len(requests) == 300


def test_same_seed_same_bytes(world, tmp_path):
    generate(tmp_path / "again", "--seed", "3")
    generate(tmp_path / "other", "--seed", "4")
    train = (world / "train.csv").read_bytes()
    assert (tmp_path / "again" / "train.csv").read_bytes() == train
    assert (tmp_path / "other" / "train.csv").read_bytes() != train


def test_two_tasks_same_world(world, tmp_path):
    generate(tmp_path / "t2", "--seed", "3", "--tasks", "2")
    spec = yaml.safe_load((tmp_path / "t2" / "features.yaml").read_text())
    assert [t["label"] for t in spec["tasks"]] == ["click", "order"]
    two, three = rows(tmp_path / "t2" / "train.csv"), rows(world / "train.csv")
    assert "cart" not in two[0] and "truth_cart" not in two[0]
    # the cart stage still happens unseen: labels and truths equal the 3-task run's
    keys = ("request_id", "item_id", "click", "order", "truth_click", "truth_order")
    assert [[r[k] for k in keys] for r in two] == [[r[k] for k in keys] for r in three]
