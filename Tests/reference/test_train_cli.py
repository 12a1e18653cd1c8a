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


def test_defaults_stop_by_validation_and_say_which_epoch_was_kept(prerank, world, tmp_path):
    """Issue 25: --epochs is a cap; at the defaults the warm start ends, then the run, when
    validation stops improving, and the output and model.json say so."""
    p = run(prerank, "train", "--features", world / "features.yaml", "--data", world / "train.csv", "--out", tmp_path / "m",
            "--hidden", "16,8", "--d", 8, "--batch", 128, "--quiet", "--id-fields", "user_id,item_id")
    t = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert t["stopped"] == "patience" and t["epochs_run"] < 40, t
    s = t["schedule"]
    assert s["max_epochs"] == 40 and s["patience"] == 2 and s["id_warmup"] == "auto"
    # The warm start ended on a plateau and ids ran after it; the kept epoch is the best of both.
    assert s["id_warmup_ended"] == "patience" and s["first_id_epoch"] >= 3
    assert t["ids"]["warmup_epochs"] == s["first_id_epoch"] - 1
    assert t["best_epoch"] <= t["epochs_run"] - 2
    assert f"warm start ends after epoch {s['first_id_epoch'] - 1} (validation did not improve for 2 epochs)" in p.stderr, p.stderr
    assert (f"stopped after epoch {t['epochs_run']}: validation did not improve for 2 epochs (patience); "
            f"kept epoch {t['best_epoch']}") in p.stderr, p.stderr


IDS = ("--id-fields", "user_id,item_id")  # this small world's id tables are below the 5,000 buckets of an id field


def test_the_epoch_cap_is_named_as_the_reason_when_it_ends_the_run(prerank, world, tmp_path):
    p = train(prerank, world, tmp_path / "m", None, *IDS)
    t = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert t["stopped"] == "max_epochs" and t["epochs_run"] == 2
    # Two epochs: one of warm start, the ids get the last.
    assert t["schedule"]["id_warmup_ended"] == "max_epochs" and t["schedule"]["first_id_epoch"] == 2
    assert "stopped after epoch 2: --epochs 2 reached (max_epochs)" in p.stderr, p.stderr
    bad = train(prerank, world, tmp_path / "bad", None, "--id-warmup-epochs", "soon", check=False)
    assert bad.returncode != 0 and "Error: --id-warmup-epochs must be auto or an integer ≥ 0, not soon" in bad.stderr


def test_quiet_drops_the_per_batch_lines_and_keeps_the_epoch_lines(prerank, world, tmp_path):
    # Batches of 16: a progress line every 32 batches (512 rows), several per epoch.
    loud = train(prerank, world, tmp_path / "loud", None, "--batch", 16, *IDS)
    quiet = train(prerank, world, tmp_path / "quiet", None, "--batch", 16, "--quiet", *IDS)
    assert "rows/s  ETA" in loud.stderr
    assert "ETA" not in quiet.stderr, quiet.stderr
    for p in (loud, quiet):
        assert "train: epoch 1 (warm start, ids off): loss" in p.stderr and "train: epoch 2: loss" in p.stderr
        assert "train: wrote" in p.stderr
    assert (tmp_path / "loud" / "weights.safetensors").read_bytes() == (tmp_path / "quiet" / "weights.safetensors").read_bytes()


def test_eval_warns_when_k_covers_every_list(prerank, world, tmp_path):
    """Lists of 20 candidates: WR@20 (or @100) is 1 whatever the model, and eval says so."""
    train(prerank, world, tmp_path / "m")
    run(prerank, "build-index", "--model", tmp_path / "m", "--items", world / "items.csv", "--out", tmp_path / "m.idx")
    args = ("eval", "--model", tmp_path / "m", "--index", tmp_path / "m.idx", "--data", world / "test.csv", "--json")
    below = run(prerank, *args, "--k", 19)
    assert "warning: --k" not in below.stderr
    for k in (20, 100):
        p = run(prerank, *args, "--k", k)
        assert f"eval: warning: --k {k} ≥ the longest list (20 candidates): WR@{k} is 1" in p.stderr, p.stderr
        assert json.loads(p.stdout)["lists"][f"wr@{k}"] in (1, None)  # None: no order in the test rows


def test_the_id_phase_learning_rate_applies_from_the_first_id_epoch_only(prerank, world, tmp_path):
    """--id-phase-lr-scale scales every learning rate once the ids start: it changes a run with
    a warm start, and nothing in a run without one (no id phase to start)."""
    def weights(name, *flags):
        train(prerank, world, tmp_path / name, None, *IDS, *flags)
        return (tmp_path / name / "weights.safetensors").read_bytes()
    assert weights("tenth") != weights("full", "--id-phase-lr-scale", 1)
    assert weights("nowarm-tenth", "--id-warmup-epochs", 0) == weights("nowarm-full", "--id-warmup-epochs", 0, "--id-phase-lr-scale", 1)
    t = json.loads((tmp_path / "tenth" / "model.json").read_text())["training"]["schedule"]
    assert t["id_phase_lr_scale"] == 0.1  # written as 0.1, not 0.10000000149011612
    bad = train(prerank, world, tmp_path / "bad", None, "--id-phase-lr-scale", 0, check=False)
    assert bad.returncode != 0 and "Error: --id-phase-lr-scale must be > 0, not 0.0" in bad.stderr, bad.stderr
