"""`prerank train` from the outside: determinism, bad rows, and a model the rest of prerank loads."""
import json

import pytest

from conftest import run


@pytest.fixture(scope="module")
def world(prerank, tmp_path_factory):
    w = tmp_path_factory.mktemp("trainworld")
    run(prerank, "generate", "--out", w, "--users", 200, "--items", 500, "--requests", 150, "--candidates", 20, "--seed", 9, "--quiet")
    return w


def train(prerank, world, out, data=None, *extra, check=True):
    return run(prerank, "train", "--features", world / "features.yaml", "--data", data or (world / "train.csv"), "--out", out,
               "--epochs", 2, "--hidden", "16,8", "--d", 8, "--batch", 128, *extra, check=check)


def test_same_seed_same_weights_and_loadable(prerank, world, tmp_path):
    train(prerank, world, tmp_path / "a", None, "--seed", "4")
    train(prerank, world, tmp_path / "b", None, "--seed", "4")
    train(prerank, world, tmp_path / "c", None, "--seed", "5")
    train(prerank, world, tmp_path / "serial", None, "--seed", "4", "--threads", "1")
    a = (tmp_path / "a" / "weights.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "weights.safetensors").read_bytes()
    # The user and item sides on one thread or two: the same arithmetic, the same weights.
    assert a == (tmp_path / "serial" / "weights.safetensors").read_bytes()
    assert a != (tmp_path / "c" / "weights.safetensors").read_bytes()
    spec = json.loads((tmp_path / "a" / "model.json").read_text())
    assert spec["architecture"]["fr"] and spec["architecture"]["lr"]
    assert set(spec["training"]["validation"]) == {"ctr", "atcr", "ctcvr"}
    info = json.loads(run(prerank, "inspect", tmp_path / "a", "--json").stdout)
    assert info["tasks"] == ["ctr", "atcr", "ctcvr"]
    run(prerank, "build-index", "--model", tmp_path / "a", "--items", world / "items.csv", "--out", tmp_path / "a.idx")
    report = json.loads(run(prerank, "eval", "--model", tmp_path / "a", "--index", tmp_path / "a.idx", "--data",
                            world / "test.csv", "--json", "--k", 5).stdout)
    assert 0 <= report["tasks"]["ctr"]["auc"] <= 1 and report["rows"] > 0


@pytest.mark.parametrize("arch", ["nse", "nse+fr", "nse+lr", "esmm"])
def test_every_architecture_trains(prerank, world, tmp_path, arch):
    train(prerank, world, tmp_path / arch, None, "--arch", arch, "--clamp", "--pos-weight", "ctr=1,ctcvr=50")
    spec = json.loads((tmp_path / arch / "model.json").read_text())
    assert spec["architecture"]["clamp"] is True
    assert spec["architecture"]["chain"] == ("multiplicative" if arch == "esmm" else "additive")


def test_bad_rows_stop_with_the_line_or_are_skipped_and_counted(prerank, world, tmp_path):
    lines = (world / "train.csv").read_text().splitlines()
    header = lines[0].split(",")
    click, order = header.index("click"), header.index("order")
    rows = [l.split(",") for l in lines[1:200]]
    rows[4][click] = "2"                       # line 6: label not 0/1
    rows[9][click], rows[9][order] = "0", "1"  # line 11: order without click
    rows[14] = rows[14][:-2]                   # line 16: wrong column count
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    p = train(prerank, world, tmp_path / "m", bad, check=False)
    # Rows are validated in one pass, in file order: the first bad line stops training.
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1].startswith("Error: ") and "line 6: label click must be 0 or 1" in p.stderr.splitlines()[-1]
    rows[4] = lines[5].split(",")              # repair line 6: now the order without a click on line 11 stops it
    bad.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    p = train(prerank, world, tmp_path / "m", bad, check=False)
    assert p.returncode == 1 and "line 11: " in p.stderr.splitlines()[-1] and "=1 without " in p.stderr.splitlines()[-1]
    rows[9] = lines[10].split(",")             # repair line 11: the short row on line 16 is next
    bad.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    p = train(prerank, world, tmp_path / "m", bad, check=False)
    assert p.returncode == 1 and "line 16" in p.stderr.splitlines()[-1] and "columns" in p.stderr.splitlines()[-1]
    rows[4][click] = "2"
    rows[9][click], rows[9][order] = "0", "1"
    bad.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    p = train(prerank, world, tmp_path / "m", bad, "--skip-bad-rows")
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    assert spec["training"]["skipped_rows"] == 3
    p = train(prerank, world, tmp_path / "x", None, "--arch", "transformer", check=False)
    assert p.returncode != 0 and "--arch" in p.stderr


def test_bench_train_reports_both_thread_counts(prerank, world):
    report = json.loads(run(prerank, "bench-train", "--features", world / "features.yaml", "--data", world / "train.csv",
                            "--hidden", "16,8", "--d", 8, "--batch", 64, "--rows", 600, "--repeats", 1, "--json").stdout)
    assert report["rows"] > 0 and report["rowsPerRepeat"] == min(600, report["rows"])
    assert report["encodeRowsPerSecond"] > 0
    assert report["stepRowsPerSecondOneThread"] > 0 and report["stepRowsPerSecondTwoThreads"] > 0
    p = run(prerank, "bench-train", "--features", world / "features.yaml", "--data", world / "nope.csv", check=False)
    assert p.returncode == 1 and p.stderr.splitlines()[-1].startswith("Error: ") and "nope.csv" in p.stderr


def test_admission_exports_the_oov_vector_into_every_non_admitted_bucket(prerank, world, tmp_path):
    """Feature admission (issue 13) checked from the files alone, with numpy: count each field's
    buckets in train.csv (SPEC §3 hashing), and every bucket with fewer than --min-count values
    must hold the same row (the shared out-of-vocabulary vector), admitted ones their own."""
    import csv
    from collections import Counter

    import numpy as np
    from prerank_ref import RefModel, bucket

    m = 3
    p = train(prerank, world, tmp_path / "adm", None, "--min-count", m, "--validation-fraction", 0, "--id-dropout", 0.3,
              "--id-warmup-epochs", 0)
    model = RefModel(str(tmp_path / "adm"))
    embedded = [f for f in model.features if f["kind"] != "dense"]
    counts = {f["name"]: Counter() for f in embedded}
    with open(world / "train.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            for f in embedded:
                cell = row.get(f["name"], "")
                values = [v for v in cell.split("|") if v] if f["kind"] == "multi" else ([cell] if cell else [])
                for v in values:
                    counts[f["name"]][bucket(f["name"], v, f["buckets"])] += 1
    recorded = model.spec["training"]["admission"]
    assert recorded["min_count"] == m
    some_oov = False
    for f in embedded:
        name, c = f["name"], counts[f["name"]]
        table = model.w[f"emb.{name}"]
        assert table.shape == (f["buckets"], f["dim"])  # the format is unchanged: no extra row
        admitted = {b for b, n in c.items() if n >= m}
        rest = [b for b in range(f["buckets"]) if b not in admitted]
        fr = recorded["fields"][name]
        assert fr["seen_buckets"] == len(c) and fr["admitted_buckets"] == len(admitted)
        assert fr["values"] == sum(c.values()) and fr["oov_values"] == sum(n for b, n in c.items() if n < m)
        if rest:
            oov = table[rest[0]]
            assert np.array_equal(table[rest], np.broadcast_to(oov, (len(rest), f["dim"]))), name
            for b in admitted:
                assert not np.array_equal(table[b], oov), (name, b)
        some_oov |= any(0 < n < m for n in c.values())
        # prerank train printed the same figures.
        assert f"train: {name}" in p.stderr and f"vocabulary {len(c)} of {f['buckets']} buckets" in p.stderr
    assert some_oov  # the world has rare values, so the test exercised the rule
    # The unchanged serving path loads and scores it.
    run(prerank, "build-index", "--model", tmp_path / "adm", "--items", world / "items.csv", "--out", tmp_path / "adm.idx")
    report = json.loads(run(prerank, "eval", "--model", tmp_path / "adm", "--index", tmp_path / "adm.idx", "--data",
                            world / "test.csv", "--json", "--k", 5).stdout)
    assert 0 <= report["tasks"]["ctr"]["auc"] <= 1 and report["rows"] > 0


def test_an_undefined_validation_auc_is_null_with_a_warning(prerank, world, tmp_path):
    """A task without a positive in the data has no AUC: model.json says null and train warns,
    instead of writing 0.5 as if it had been measured."""
    import csv
    rows = list(csv.reader(open(world / "train.csv")))
    order = rows[0].index("order")
    for r in rows[1:]:
        r[order] = "0"
    data = tmp_path / "no-orders.csv"
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    p = train(prerank, world, tmp_path / "m", data)
    assert "no positive (or no negative) ctcvr label" in p.stderr, p.stderr
    validation = json.loads((tmp_path / "m" / "model.json").read_text())["training"]["validation"]
    assert validation["ctcvr"]["auc"] is None
    assert isinstance(validation["ctr"]["auc"], float) and isinstance(validation["ctcvr"]["logloss"], float)
