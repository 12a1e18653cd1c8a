"""Issue #15, end to end: a server logging the candidates it dropped (request_log.candidate_sample),
feedback, `join-logs --dropped` (exposed=0 rows, labels 0, weight 1/pi), `prerank train
--weight-column weight`, and the trained model scoring."""
import csv
import gzip
import json
import os
from collections import defaultdict

import pytest

from conftest import free_port, run, Server, write_config

K, SAMPLE, CANDIDATES = 5, 4, 20
USER_FIELDS = ["user_id", "segment", "gender", "region", "age", "query_terms", "query_category"]


@pytest.fixture(scope="module")
def world(make_world):
    return make_world(users=200, items=1500, requests=200, candidates=CANDIDATES, seed=11)


def requests_of(path):
    """request_id -> (user map, [item ids], {item id: (click, cart, order)}) from a generated CSV."""
    out = {}
    for row in csv.DictReader(open(path, newline="")):
        rid = row["request_id"]
        if rid not in out:
            user = {}
            for f in USER_FIELDS:
                if row[f] == "":
                    continue
                user[f] = float(row[f]) if f == "age" else (row[f].split("|") if f == "query_terms" else row[f])
            out[rid] = (user, [], {})
        item = int(row["item_id"])
        out[rid][1].append(item)
        out[rid][2][item] = (row["click"], row["cart"], row["order"])
    return out


@pytest.fixture(scope="module")
def joined(prerank, world, tmp_path_factory):
    """Serve, send every training request with its request_id, write the feedback, join."""
    tmp = tmp_path_factory.mktemp("joined")
    port = free_port()
    config = tmp / "prerank.yaml"
    write_config(config, world, port, extra=f"""request_log:
  dir: {tmp / 'logs'}
  sample_rate: 1.0
  candidate_sample: {SAMPLE}
""")
    reqs = requests_of(world / "data" / "train.csv")
    server = Server(prerank, config, port)
    try:
        for rid, (user, items, _) in reqs.items():
            body = {"request_id": f"q{rid}", "user": user, "candidates": items, "k": K}
            r, data = server.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})
            assert r.status == 200, data
    finally:
        assert server.stop() == 0  # SIGTERM writes and compresses the queued lines
    lines = []
    for name in sorted(os.listdir(tmp / "logs")):
        data = (tmp / "logs" / name).read_bytes()
        lines += [json.loads(l) for l in (gzip.decompress(data) if name.endswith(".gz") else data).decode().splitlines() if l]
    assert len(lines) == len(reqs)
    # Feedback: every candidate's labels from the world, shown or not (feedback on an item the
    # server did not return cannot have come from this request's answer: join-logs must not use it).
    labels = tmp / "labels.csv"
    with open(labels, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["request_id", "item_id", "click", "cart", "order"])
        for rid, (_, _, lab) in reqs.items():
            for item, (c, a, o) in lab.items():
                if c != "0":
                    out.writerow([f"q{rid}", item, c, a, o])
    common = ["--logs", tmp / "logs", "--labels", labels, "--features", world / "data" / "features.yaml",
              "--items", world / "data" / "items.csv"]
    p = run(prerank, "join-logs", *common, "--dropped", "--out", tmp / "train-dropped.csv")
    plain = run(prerank, "join-logs", *common, "--out", tmp / "train-plain.csv")
    return {"tmp": tmp, "lines": {l["request_id"]: l for l in lines}, "labels": reqs, "stderr": p.stderr,
            "dropped_csv": tmp / "train-dropped.csv", "plain_csv": tmp / "train-plain.csv", "plain_stderr": plain.stderr}


def test_join_logs_writes_dropped_rows_with_inverse_inclusion_weights(joined):
    rows = list(csv.DictReader(open(joined["dropped_csv"], newline="")))
    header = open(joined["dropped_csv"]).readline().strip().split(",")
    assert header[-5:] == ["click", "cart", "order", "exposed", "weight"]
    by_request = defaultdict(list)
    for r in rows:
        by_request[r["request_id"]].append(r)
    assert set(by_request) == set(joined["lines"])
    dropped_total = 0
    for rid, line in joined["lines"].items():
        got = by_request[rid]
        exposed = [r for r in got if r["exposed"] == "1"]
        unexposed = [r for r in got if r["exposed"] == "0"]
        assert len(exposed) + len(unexposed) == len(got)
        # Exposed rows: the answer, in answer order, weight 1.
        assert [int(r["item_id"]) for r in exposed] == [i["id"] for i in line["items"]]
        assert all(float(r["weight"]) == 1 for r in exposed)
        # Dropped rows: the logged sample, weight 1/pi, every label 0 even where feedback named the pair.
        pi = line["dropped"]["inclusion"]
        distinct = len(set(line["candidates"]))
        assert pi == pytest.approx(SAMPLE / (distinct - len(line["items"])))
        assert [int(r["item_id"]) for r in unexposed] == [i["id"] for i in line["dropped"]["items"]]
        assert len(unexposed) == SAMPLE
        assert not {r["item_id"] for r in unexposed} & {r["item_id"] for r in exposed}
        for r in unexposed:
            assert float(r["weight"]) == pytest.approx(1 / pi, rel=1e-11)
            assert (r["click"], r["cart"], r["order"]) == ("0", "0", "0")
            # User and item features are filled as for exposed rows.
            assert r["user_id"] == exposed[0]["user_id"] and r["item_category"] != ""
        dropped_total += len(unexposed)
    assert f"{dropped_total} dropped rows" in joined["stderr"]
    # Some exposed row has a click, and some dropped item had feedback that was not used.
    assert any(r["click"] == "1" for r in rows if r["exposed"] == "1")
    assert any(joined["labels"][rid[1:]][2][int(r["item_id"])][0] != "0"
               for rid, got in by_request.items() for r in got if r["exposed"] == "0")


def test_without_dropped_the_output_is_unchanged(joined):
    plain = list(csv.reader(open(joined["plain_csv"], newline="")))
    assert plain[0][-3:] == ["click", "cart", "order"]
    full = list(csv.reader(open(joined["dropped_csv"], newline="")))
    exposed = [r[:-2] for r in full[1:] if r[-2] == "1"]
    assert plain[1:] == exposed
    assert "dropped rows" not in joined["plain_stderr"]


def test_train_with_the_weight_column_and_score(prerank, world, joined, tmp_path):
    data = joined["dropped_csv"]
    common = ["--features", world / "data" / "features.yaml", "--data", data, "--epochs", 2, "--hidden", "16,8",
              "--d", 8, "--batch", 64, "--validation-fraction", 0.2, "--min-count", 0]
    p = run(prerank, "train", *common, "--out", tmp_path / "w", "--weight-column", "weight", "--pos-weight", "ctcvr=5")
    spec = json.loads((tmp_path / "w" / "model.json").read_text())
    weights = spec["training"]["weights"]
    assert weights["column"] == "weight" and weights["validation"] == "unweighted"
    assert "sum of the batch's weights" in weights["loss"]
    assert spec["training"]["pos_weight"] == {"ctcvr": 5}
    assert "validation AUC" in p.stderr
    # The weighted model loads and scores.
    run(prerank, "build-index", "--model", tmp_path / "w", "--items", world / "data" / "items.csv", "--out", tmp_path / "w.st")
    report = json.loads(run(prerank, "eval", "--model", tmp_path / "w", "--index", tmp_path / "w.st", "--data",
                            world / "data" / "test.csv", "--json", "--k", 5).stdout)
    assert report["rows"] > 0 and 0 <= report["tasks"]["ctr"]["auc"] <= 1
    # Weighted validation; the same file without the flag (the extra columns are ignored) trains
    # other weights.
    run(prerank, "train", *common, "--out", tmp_path / "wv", "--weight-column", "weight", "--weighted-validation")
    assert json.loads((tmp_path / "wv" / "model.json").read_text())["training"]["weights"]["validation"] == "weighted"
    run(prerank, "train", *common, "--out", tmp_path / "u", "--pos-weight", "ctcvr=5")
    assert json.loads((tmp_path / "u" / "model.json").read_text())["training"]["weights"]["column"] is None
    assert (tmp_path / "u" / "weights.safetensors").read_bytes() != (tmp_path / "w" / "weights.safetensors").read_bytes()


def test_weight_column_errors_are_one_line(prerank, world, joined, tmp_path):
    common = ["--features", world / "data" / "features.yaml", "--out", tmp_path / "m", "--epochs", 1, "--hidden", "8",
              "--d", 4]
    p = run(prerank, "train", *common, "--data", joined["dropped_csv"], "--weight-column", "nope", check=False)
    assert p.returncode == 1 and p.stderr.splitlines()[-1] == f"Error: {joined['dropped_csv']}: no weight column nope (--weight-column)"
    lines = open(joined["dropped_csv"]).read().splitlines()
    cells = lines[3].split(",")
    cells[-1] = "-2"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:3] + [",".join(cells)] + lines[4:]) + "\n")
    p = run(prerank, "train", *common, "--data", bad, "--weight-column", "weight", check=False)
    last = p.stderr.splitlines()[-1]
    assert p.returncode == 1 and last.startswith(f"Error: {bad}: line 4: weight \"-2\"") and "(column weight)" in last, p.stderr
    p = run(prerank, "train", *common, "--data", bad, "--weighted-validation", check=False)
    assert p.returncode != 0 and "--weighted-validation needs --weight-column" in p.stderr
