"""prerank_torch (python/): the PyTorch trainer against the Swift binary.

Hashing and encoding parity, forward parity of exported models with `prerank score`, Parquet and
directory inputs, data-parallel training under torchrun (gloo, 2 CPU processes), resume from a
checkpoint, fine-tuning a `prerank train` model, and one-line errors for bad input.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import ROOT, run
import prerank_ref as ref

sys.path.insert(0, os.path.join(ROOT, "python"))
import torch  # noqa: E402

from prerank_torch import hashing  # noqa: E402
from prerank_torch.data import Encoder, concat, iterate_blocks, to_batch  # noqa: E402
from prerank_torch.model import TwinTower, chain, encode_request_side  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           OMP_NUM_THREADS="1")
SMALL = ["--hidden", "16,8", "--d", "8"]


def torch_train_inprocess(*args):
    """The CLI's main() in this process (saves the ~5 s torch import of a subprocess)."""
    from prerank_torch.__main__ import main
    # One intra-op thread: OpenMP threads spin-wait, which costs dearly on a shared 2-core box.
    main(["train", *map(str, args), *([] if "--threads" in args else ["--threads", "1"])])


def inprocess_error(capsys, *args):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        torch_train_inprocess(*args)
    assert e.value.code == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def torch_train(*args, nproc=0, check=True, timeout=300):
    """`python3 -m prerank_torch train ...`, or under torchrun with `nproc` processes."""
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "prerank_torch", "train"]
    else:
        cmd = [sys.executable, "-m", "prerank_torch", "train"]
    p = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"prerank_torch train {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def eval_json(prerank, model, world, tmp):
    index = tmp / (os.path.basename(str(model)) + ".idx")
    run(prerank, "build-index", "--model", model, "--items", world / "items.csv", "--out", index)
    return json.loads(run(prerank, "eval", "--model", model, "--index", index, "--data", world / "test.csv",
                          "--json", "--k", 20).stdout)


def random_text(rng, n):
    alphabet = list("abcXYZ019 -_.,|é漢😀\"'")
    return "".join(rng.choice(alphabet, n))


# --- hashing and encoding -------------------------------------------------------------------

def test_hashing_matches_reference_on_10k_values():
    rng = np.random.default_rng(3)
    fields = ["user_id", "query_terms", "brand", "é-field", "x"]
    for i in range(10_000):
        field = fields[i % len(fields)]
        buckets = int(rng.choice([1, 7, 101, 100003, 2**31 - 1]))
        if i % 3 == 0:
            value = int(rng.integers(-10**12, 10**12))
        else:
            value = random_text(rng, int(rng.integers(1, 12)))
        assert hashing.bucket(field, value, buckets) == ref.bucket(field, value, buckets), (field, value, buckets)
    # Fixed points of FNV-1a 64 (the published test vectors).
    assert hashing.fnv1a(b"") == 0xcbf29ce484222325
    assert hashing.fnv1a(b"a") == 0xaf63dc4c8601ec8c
    assert hashing.bucket("f", 42, 1000) == hashing.bucket("f", "42", 1000)
    with pytest.raises(ValueError):
        hashing.bucket("f", 4.5, 10)


def test_vectorised_hashing_equals_the_byte_loop():
    """fnv1a_many (numpy, one pass per byte position) gives fnv1a's value for every string:
    empty, one byte, multi-byte UTF-8, NUL bytes, 210 bytes; FieldHasher.column the reference
    buckets, through its cache and after it."""
    rng = np.random.default_rng(8)
    texts = ["", "a", "\x00", "a\x00b", "x\x00", "漢" * 70] + [random_text(rng, int(rng.integers(0, 40))) for _ in range(5000)]
    texts += [str(int(v)) for v in rng.integers(0, 10**15, 5000)]
    seed = hashing.field_seed("user_id")
    got = hashing.fnv1a_many(texts, seed)
    assert got.dtype == np.uint64
    assert [int(x) for x in got] == [hashing.fnv1a(t.encode("utf-8"), seed) for t in texts]
    assert len(hashing.fnv1a_many([], seed)) == 0
    hasher = hashing.FieldHasher("user_id", 100003)
    for _ in range(2):  # misses, then cache hits
        col = hasher.column(texts)
        assert [int(b) for b in col] == [-1 if t == "" else ref.bucket("user_id", t, 100003) for t in texts]


def write_rows(path, n, rng, labels=("label_ctr", "label_atcr", "label_ctcvr")):
    """Random impressions for ref.random_model's features: missing, empty and multi values."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "user_id", "query_terms", "segment", "age", "item_id", "brand", "tags", "price",
                    "rating", *labels])
        for i in range(n):
            def maybe(s):
                return "" if rng.random() < 0.1 else s
            terms = "|".join(random_text(rng, int(rng.integers(1, 6))).replace("|", "") or "t"
                             for _ in range(int(rng.integers(0, 4))))
            click = int(rng.random() < 0.3)
            cart = int(click and rng.random() < 0.5)
            order = int(cart and rng.random() < 0.5)
            w.writerow([f"r{i // 7}", maybe(random_text(rng, 5)), terms, maybe(f"s{rng.integers(0, 9)}"),
                        maybe(f"{rng.normal(40, 12):.3f}"), int(rng.integers(1, 10**6)), maybe(random_text(rng, 4)),
                        "|".join(f"t{x}" for x in rng.integers(0, 30, rng.integers(0, 4))),
                        maybe(f"{rng.uniform(1, 100):.3f}"), f"{rng.uniform(1, 5):.2f}", click, cart, order][:len(labels) + 10])


def test_encoder_matches_reference_on_10k_rows(tmp_path):
    ref.random_model(str(tmp_path / "m"), seed=4)
    rows_csv = tmp_path / "rows.csv"
    rng = np.random.default_rng(5)
    write_rows(rows_csv, 10_000, rng)
    model = TwinTower.load(str(tmp_path / "m"))
    refm = ref.RefModel(str(tmp_path / "m"))
    enc = Encoder(model.tasks, model.features)
    block = concat([b for b, _ in iterate_blocks([str(rows_csv)], enc, 0, 1, 0.0, "all", chunk=777)])
    with torch.no_grad():
        xu, xi = model.encoder(to_batch(block, 3))
    want_u, want_i = [], []
    with open(rows_csv, newline="") as f:
        for row in csv.DictReader(f):
            vals = {}
            for feat in refm.features:
                cell = row[feat["name"]]
                if feat["kind"] == "multi":
                    vals[feat["name"]] = [c for c in cell.split("|") if c]
                elif feat["kind"] == "dense":
                    vals[feat["name"]] = float(cell) if cell else None
                else:
                    vals[feat["name"]] = cell or None
            want_u.append(refm.encode("user", vals))
            want_i.append(refm.encode("item", vals))
    assert len(want_u) == block["n"] == 10_000
    np.testing.assert_allclose(xu.double().numpy(), np.array(want_u), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(xi.double().numpy(), np.array(want_i), rtol=2e-6, atol=2e-6)


def test_item_towers_match_the_swift_index_on_random_values(prerank, tmp_path):
    """build-index runs Swift's encoder and item towers: ~10k random brand/tag values."""
    ref.random_model(str(tmp_path / "m"), seed=6)
    rng = np.random.default_rng(7)
    with open(tmp_path / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "brand", "tags", "price", "rating"])
        for i in range(3000):
            tags = "|".join(random_text(rng, int(rng.integers(1, 8))).replace("|", "") or "q" for _ in range(rng.integers(0, 5)))
            w.writerow([i + 1, "" if i % 11 == 0 else random_text(rng, int(rng.integers(1, 9))), tags,
                        "" if i % 13 == 0 else f"{rng.uniform(1, 100):.4f}", f"{rng.uniform(1, 5):.2f}"])
    run(prerank, "build-index", "--model", tmp_path / "m", "--items", tmp_path / "items.csv", "--out", tmp_path / "i.st")
    index = load_file(str(tmp_path / "i.st"))
    model = TwinTower.load(str(tmp_path / "m")).double()
    with open(tmp_path / "items.csv", newline="") as f:
        items = list(csv.DictReader(f))
    ids = index["ids"]
    assert list(ids) == [int(r["item_id"]) for r in items]
    for start in range(0, len(items), 500):
        chunk = items[start:start + 500]
        dense = torch.tensor([[float(r[c]) if r[c] else float("nan") for c in ("price", "rating")] for r in chunk],
                             dtype=torch.float64)
        bags = []
        for feat in model.features:
            if feat["side"] != "item" or feat["kind"] == "dense":
                continue
            name, flat, offsets = feat["name"], [], []
            for r in chunk:
                offsets.append(len(flat))
                cell = r[name]
                values = [v for v in cell.split("|") if v] if feat["kind"] == "multi" else ([cell] if cell else [])
                flat += [hashing.bucket(name, v, feat["buckets"]) for v in values]
            bags.append((torch.tensor(flat, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)))
        with torch.no_grad():
            v = model.towers.tower("item", model.encoder.side("item", dense, bags)).numpy()
        np.testing.assert_allclose(index["vectors"][start:start + 500], v, rtol=1e-5, atol=1e-6)


# --- forward parity with `prerank score` ------------------------------------------------------

VARIANTS = {
    "resflow": dict(fr=True, lr=True, clamp=False, chain="additive"),
    "resflow_clamp": dict(fr=True, lr=True, clamp=True, chain="additive"),
    "nse": dict(fr=False, lr=False, clamp=False, chain="additive"),
    "esmm": dict(fr=False, lr=False, clamp=False, chain="multiplicative"),
}


@pytest.mark.parametrize("tasks", [("ctr", "ctcvr"), ("ctr", "atcr", "ctcvr")], ids=["T2", "T3"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_of_exported_model_equals_prerank_score(prerank, tmp_path, variant, tasks):
    ref.random_model(str(tmp_path / "src"), tasks=tasks, seed=len(tasks) * 10 + len(variant), **VARIANTS[variant])
    # Import, then export with this package: the file prerank scores is the one we wrote.
    TwinTower.load(str(tmp_path / "src")).export(str(tmp_path / "m"))
    a, b = load_file(str(tmp_path / "src" / "weights.safetensors")), load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    catalog = tmp_path / "items.csv"
    ids = ref.write_catalog(str(catalog), 300, seed=3)
    run(prerank, "build-index", "--model", tmp_path / "m", "--items", catalog, "--out", tmp_path / "i.st")
    model = TwinTower.load(str(tmp_path / "m")).double()
    items = ref.read_catalog(str(catalog), ref.RefModel(str(tmp_path / "m")))
    item_x = {}
    with torch.no_grad():
        for iid, vals in items.items():
            dense, bags = encode_request_side(model, "item", vals)
            item_x[iid] = model.towers.tower("item", model.encoder.side("item", dense.double(), bags))
    rng = np.random.default_rng(1)
    clamped = 0
    for n in range(4):
        user = {"user_id": random_text(rng, 6), "segment": f"s{n}", "age": float(rng.normal(40, 10))}
        query = {"query_terms": [random_text(rng, 4) for _ in range(n)] + [n]}
        if n == 3:
            user = {"user_id": int(rng.integers(0, 10**9))}
            query = {}
        cands = [int(x) for x in rng.choice(ids, 40, replace=False)]
        req = {"request_id": f"r{n}", "user": user, "query": query, "candidates": cands, "k": 40, "debug": True}
        (tmp_path / "req.json").write_text(json.dumps(req))
        answer = json.loads(run(prerank, "score", "--model", tmp_path / "m", "--index", tmp_path / "i.st",
                                "--request", tmp_path / "req.json").stdout)
        assert len(answer["items"]) == 40
        with torch.no_grad():
            dense, bags = encode_request_side(model, "user", {**user, **query})
            u = model.towers.tower("user", model.encoder.side("user", dense.double(), bags))
            for item in answer["items"]:
                v = item_x[item["id"]]
                r = (u * v).sum(-1) + model.towers.head
                p = chain(r, model.arch)[0][0].numpy()
                clamped += int(VARIANTS[variant]["clamp"] and bool((r[0, 1:] > 0).any()))
                cond = float((u * v).abs().sum())
                rel = max(1e-5, 3e-7 * len(tasks) * cond)  # an F32 index rounds u and v (test_model_core)
                for k, name in enumerate(tasks):
                    assert item["tasks"][name] == pytest.approx(float(p[k]), rel=rel, abs=1e-9), (name, item["id"])
    if VARIANTS[variant]["clamp"]:
        assert clamped > 0  # the clamp was exercised


# --- the epoch schedule (prerank train's, Tests/TrainingTests/EpochScheduleTests.swift) ----------

def run_schedule(schedule, scores):
    """Feeds `scores` (epoch 1, 2, ...) until the schedule stops; returns every action."""
    actions = []
    for i, s in enumerate(scores):
        actions.append(schedule.record(i + 1, s))
        if actions[-1][0] == "stop":
            break
    return actions


def test_schedule_warm_start_ends_on_a_plateau_and_ids_start_from_the_best_epoch():
    from prerank_torch.schedule import EpochSchedule
    s = EpochSchedule(40, 2, "auto")
    a = run_schedule(s, [0.60, 0.62, 0.63, 0.64, 0.65, 0.649, 0.648, 0.66, 0.655, 0.659, 0.7])
    assert a == [("next",)] * 6 + [("start_ids", 5), ("next",), ("next",), ("stop", "patience")]
    assert s.best[0] == 8 and s.first_id_epoch == 8 and s.warm_start_end == "patience"
    assert s.warm_start_epochs(10) == 7


def test_schedule_ids_that_never_beat_the_warm_start_leave_it_the_best_epoch():
    from prerank_torch.schedule import EpochSchedule
    s = EpochSchedule(40, 2, "auto")
    a = run_schedule(s, [0.60, 0.61, 0.60, 0.60, 0.59, 0.58])
    assert a[3] == ("start_ids", 2) and a[-1] == ("stop", "patience") and len(a) == 6
    assert s.best[0] == 2 and s.first_id_epoch == 5


def test_schedule_cap_ends_a_run_that_still_improves_and_leaves_the_ids_the_last_epoch():
    from prerank_torch.schedule import EpochSchedule
    s = EpochSchedule(3, 2, "auto")
    assert run_schedule(s, [0.6, 0.7, 0.8, 0.9]) == [("next",), ("start_ids", 2), ("stop", "max_epochs")]
    assert s.warm_start_end == "max_epochs" and s.first_id_epoch == 3


def test_schedule_fixed_warm_start_runs_its_epochs_whatever_validation_says():
    from prerank_torch.schedule import EpochSchedule
    s = EpochSchedule(10, 1, 3)
    assert run_schedule(s, [0.7, 0.6, 0.65, 0.72, 0.71]) == [
        ("next",), ("next",), ("start_ids", 1), ("next",), ("stop", "patience")]
    assert s.warm_start_end == "epochs" and s.best[0] == 4


def test_schedule_without_ids_or_warm_start_is_one_phase():
    from prerank_torch.schedule import IDS, EpochSchedule
    for warm in (None, 0):
        s = EpochSchedule(40, 2, warm)
        assert s.phase == IDS and s.first_id_epoch == 1
        assert run_schedule(s, [0.6, 0.7, 0.69, 0.68, 0.9]) == [("next",)] * 3 + [("stop", "patience")]
        assert s.best[0] == 2 and s.warm_start_end is None and s.warm_start_epochs(4) == 0
    one = EpochSchedule(1, 2, "auto")
    assert one.phase == IDS and one.warm_start is None


def test_schedule_without_validation_only_the_cap_stops_and_warm_start_takes_three_epochs():
    from prerank_torch.schedule import EpochSchedule
    s = EpochSchedule(6, 1, "auto")
    assert run_schedule(s, [None] * 7) == [("next",), ("next",), ("start_ids", 3), ("next",), ("next",),
                                           ("stop", "max_epochs")]
    assert s.best[0] == 6


def test_schedule_state_round_trips_through_a_checkpoint():
    """A resumed run takes the decisions an uninterrupted one takes."""
    from prerank_torch.schedule import EpochSchedule
    scores = [0.60, 0.62, 0.61, 0.60, 0.63, 0.62, 0.61]
    whole = run_schedule(EpochSchedule(40, 2, "auto"), scores)
    first = EpochSchedule(40, 2, "auto")
    head = [first.record(i + 1, x) for i, x in enumerate(scores[:3])]
    resumed = EpochSchedule(40, 2, "auto")
    resumed.load_state_dict(torch.load(_saved(first.state_dict()), weights_only=False))
    tail = [resumed.record(i + 4, x) for i, x in enumerate(scores[3:])]
    assert head + tail == whole and whole[-1] == ("stop", "patience")


def _saved(obj):
    import io
    f = io.BytesIO()
    torch.save(obj, f)
    f.seek(0)
    return f


# --- training ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(prerank, tmp_path_factory):
    """3,000 requests to train on (~120k impressions) and a 4× larger test set from the same world:
    CTCVR has ~0.2 % positives, so the test set's size sets the noise of its AUC."""
    w = tmp_path_factory.mktemp("torchworld")
    run(prerank, "generate", "--out", w, "--requests", 15000, "--seed", 3, "--quiet")
    lines = (w / "train.csv").read_text().splitlines()
    rid = lines[0].split(",").index("request_id")
    first = {l.split(",")[rid] for l in lines[1:]}
    keep = sorted(first, key=lambda r: int(r) if r.isdigit() else r)[:3000]
    keep = set(keep)
    (w / "train-all.csv").write_text((w / "train.csv").read_text())
    (w / "train.csv").write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.split(",")[rid] in keep]) + "\n")
    return w


TRAIN = ["--epochs", 2, "--batch", 512, "--seed", 7, "--hidden", "32,16", "--d", 16]  # both trainers' defaults otherwise
TORCHRUN_TRAIN = ["--epochs", 2, "--batch", 512, "--seed", 7, "--hidden", "32,16", "--dim", 16]  # torchrun: --d is ambiguous to it


def distinct_rows(table):
    return len(np.unique(table, axis=0))


def test_torchrun_two_processes_match_one_process_and_prerank_train(prerank, world, tmp_path):
    """Both trainers at their defaults (id measures on: admission, id dropout, id warm start), same
    data and seed. prerank_torch reproduces prerank train's random streams (init, row order, id
    dropout: swiftrng.py), so they differ by float rounding only, which 580 Adam steps amplify into
    weight differences but not into test AUC (docs/TRAINING.md "PyTorch trainer", measured)."""
    run(prerank, "train", "--features", world / "features.yaml", "--data", world / "train.csv",
        "--out", tmp_path / "swift", *TRAIN)
    common = ["--features", world / "features.yaml", "--data", world / "train.csv", "--workers", 0]
    torch_train_inprocess(*common, "--out", tmp_path / "one", *TRAIN)
    p = torch_train(*common, "--out", tmp_path / "two", *TORCHRUN_TRAIN, nproc=2)
    assert "2 process(es), backend gloo" in p.stderr and "prerank train's permutation" in p.stderr
    specs = {n: json.loads((tmp_path / n / "model.json").read_text())["training"] for n in ("swift", "one", "two")}
    assert specs["two"]["world_size"] == 2 and specs["two"]["trainer"] == "prerank_torch"
    # The same admission (counted over both ranks' rows) and id settings as prerank train.
    for n in ("one", "two"):
        assert specs[n]["admission"] == specs["swift"]["admission"], n
        assert specs[n]["ids"] == specs["swift"]["ids"] == {
            "fields": ["user_id", "item_id"], "dropout": 0.5, "warmup_epochs": 1, "lr_scale": 1, "dim": None}
        assert specs[n]["best_epoch"] == specs["swift"]["best_epoch"], n
        assert specs[n]["stopped"] == specs["swift"]["stopped"] == "max_epochs", n
        assert specs[n]["schedule"] == specs["swift"]["schedule"], n
    # Export: every non-admitted bucket's row holds the OOV vector (unseen buckets too), so a table
    # has at most admitted + 1 distinct rows.
    item_id = specs["swift"]["admission"]["fields"]["item_id"]
    assert item_id["admitted_buckets"] < item_id["seen_buckets"]
    for n in ("swift", "one", "two"):
        w = load_file(str(tmp_path / n / "weights.safetensors"))
        assert distinct_rows(w["emb.item_id"]) <= item_id["admitted_buckets"] + 1, n
    reports = {name: eval_json(prerank, tmp_path / name, world, tmp_path) for name in ("swift", "one", "two")}
    print({n: {t: round(r["tasks"][t]["auc"], 4) for t in r["tasks"]} for n, r in reports.items()})
    for task in reports["swift"]["tasks"]:
        swift, one, two = (reports[n]["tasks"][task]["auc"] for n in ("swift", "one", "two"))
        assert abs(two - one) <= 0.005, (task, one, two)
        assert abs(two - swift) <= 0.01 and abs(one - swift) <= 0.01, (task, swift, one, two)


@pytest.mark.parametrize("epochs", [1, 2])
def test_same_seed_same_first_steps_as_prerank_train(prerank, world, tmp_path, capsys, epochs):
    """Two steps on 1,024 rows at the defaults (admission, id dropout): the weights prerank train
    writes, to float rounding — init, row order, dropout masks, admission and Adam are the same.
    --epochs 2: a warm-start epoch, then an id epoch from its model, every id row starting as the
    OOV vector and every learning rate scaled by --id-phase-lr-scale (the schedule's step)."""
    lines = (world / "train.csv").read_text().splitlines()[:1025]
    data = tmp_path / "tiny.csv"
    data.write_text("\n".join(lines) + "\n")
    args = ["--features", world / "features.yaml", "--data", data, "--epochs", epochs, "--batch", 512, "--seed", 7,
            "--validation-fraction", 0, *SMALL]
    run(prerank, "train", *args, "--out", tmp_path / "swift")
    torch_train_inprocess(*args, "--out", tmp_path / "torch", "--workers", 0, "--log-every", 0, "--no-checkpoint")
    a = load_file(str(tmp_path / "swift" / "weights.safetensors"))
    b = load_file(str(tmp_path / "torch" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def small(world):
    """The first 20,000 impressions of the training file."""
    lines = (world / "train.csv").read_text().splitlines()[:20001]
    path = world / "small.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_both_trainers_at_their_defaults_stop_by_patience_with_the_same_schedule(prerank, world, small, tmp_path,
                                                                                  capsys):
    """Issue 25: at the defaults (--epochs 40 a cap, warm start until validation stops improving,
    ids from the best warm-start epoch at --id-phase-lr-scale 0.1, patience 2) both trainers end
    by patience long before the cap and record the same schedule. prerank train with --threads 1
    takes the steps prerank_torch takes, so every decision falls on the same epoch."""
    args = ["--features", world / "features.yaml", "--data", small, *SMALL]
    swift = run(prerank, "train", *args, "--out", tmp_path / "swift", "--threads", 1)
    capsys.readouterr()
    torch_train_inprocess(*args, "--out", tmp_path / "torch", "--workers", 0, "--log-every", 0, "--no-checkpoint")
    printed = capsys.readouterr().err
    specs = {n: json.loads((tmp_path / n / "model.json").read_text())["training"] for n in ("swift", "torch")}
    for n, t in specs.items():
        assert t["stopped"] == "patience" and t["epochs_run"] < 40, (n, t["stopped"], t["epochs_run"])
        assert t["schedule"]["max_epochs"] == 40 and t["schedule"]["patience"] == 2, n
        assert t["schedule"]["id_warmup"] == "auto" and t["schedule"]["id_phase_lr_scale"] == 0.1, n
        assert t["schedule"]["id_warmup_ended"] == "patience", n
    print({n: (t["epochs_run"], t["best_epoch"], t["schedule"]["first_id_epoch"]) for n, t in specs.items()})
    assert specs["torch"]["schedule"] == specs["swift"]["schedule"]
    for key in ("stopped", "epochs_run", "best_epoch", "ids"):
        assert specs["torch"][key] == specs["swift"][key], (key, specs["torch"][key], specs["swift"][key])
    stop = f"train: stopped after epoch {specs['swift']['epochs_run']}: validation did not improve for 2 epochs " \
           f"(patience); kept epoch {specs['swift']['best_epoch']}"
    assert stop in swift.stderr + swift.stdout and stop in printed, printed


@pytest.mark.parametrize("shuffle", ["full", "buffer"])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(world, small, tmp_path, capsys, shuffle):
    # buffer: two DataLoader workers, each reads its share of the rows through its own seeded
    # shuffle; full: prerank train's order, replayed to the step. Id warm start in epoch 1, id
    # dropout in epoch 2 (the defaults at --epochs 2).
    base = ["--features", world / "features.yaml", "--data", small, "--workers", 2, "--epochs", 2, "--batch", 256,
            "--seed", 5, "--log-every", 0, "--shuffle", shuffle, *SMALL]
    torch_train_inprocess(*base, "--out", tmp_path / "full")
    # Interrupted mid-epoch 1, then again in epoch 2 after resuming once (~70 steps an epoch).
    torch_train_inprocess(*base, "--out", tmp_path / "cut", "--stop-after-steps", 20)
    assert not (tmp_path / "cut" / "model.json").exists() and (tmp_path / "cut" / "checkpoint.pt").exists()
    torch_train_inprocess(*base, "--out", tmp_path / "cut", "--resume", "--stop-after-steps", 60)
    assert not (tmp_path / "cut" / "model.json").exists()
    p = torch_train(*base, "--out", tmp_path / "cut", "--resume")
    assert "resumed from" in p.stderr and "at epoch 2, step" in p.stderr, p.stderr
    a = load_file(str(tmp_path / "full" / "weights.safetensors"))
    b = load_file(str(tmp_path / "cut" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_parquet_and_directory_inputs_train_the_same_model(world, tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    lines = (world / "train.csv").read_text().splitlines()[:4001]
    small = tmp_path / "small.csv"
    small.write_text("\n".join(lines) + "\n")
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.csv").write_text("\n".join(lines[:1500]) + "\n")
    (parts / "b.csv").write_text("\n".join([lines[0]] + lines[1500:]) + "\n")
    # Strings for ids and categorical columns, integers for labels, doubles for dense fields.
    import yaml
    spec = yaml.safe_load((world / "features.yaml").read_text())
    dense = {f["name"] for f in spec["features"] if f["kind"] == "dense"}
    label_cols = {t["label"] for t in spec["tasks"]}
    types = {c: ("float64" if c in dense else "int64" if c in label_cols else "string") for c in lines[0].split(",")}
    table = pacsv.read_csv(small, convert_options=pacsv.ConvertOptions(column_types=types))
    pq.write_table(table, tmp_path / "small.parquet", row_group_size=1000)
    common = ["--features", world / "features.yaml", "--workers", 0, "--epochs", 1, "--seed", 3, *SMALL]
    for name, data in (("csv", small), ("parquet", tmp_path / "small.parquet"), ("dir", parts)):
        torch_train_inprocess(*common, "--data", data, "--out", tmp_path / name, "--log-every", 0)
    ref_w = load_file(str(tmp_path / "csv" / "weights.safetensors"))
    for name in ("parquet", "dir"):
        w = load_file(str(tmp_path / name / "weights.safetensors"))
        for k in ref_w:
            assert np.array_equal(ref_w[k], w[k]), (name, k)


def test_fine_tunes_a_prerank_train_model(prerank, world, small, tmp_path):
    run(prerank, "train", "--features", world / "features.yaml", "--data", small, "--out", tmp_path / "swift",
        "--epochs", 1, *SMALL)
    torch_train_inprocess("--init-model", tmp_path / "swift", "--data", small, "--out", tmp_path / "tuned",
                          "--epochs", 1, "--workers", 0, "--lr", 0.0005, "--log-every", 0)
    swift = json.loads((tmp_path / "swift" / "model.json").read_text())
    tuned = json.loads((tmp_path / "tuned" / "model.json").read_text())
    assert tuned["features"] == swift["features"] and tuned["architecture"] == swift["architecture"]
    assert tuned["training"]["init_model"] == str(tmp_path / "swift")
    a = load_file(str(tmp_path / "swift" / "weights.safetensors"))
    b = load_file(str(tmp_path / "tuned" / "weights.safetensors"))
    assert np.array_equal(a["dense.user.mean"], b["dense.user.mean"])  # the model's normalisation is kept
    assert not np.array_equal(a["user.ctr.0.weight"], b["user.ctr.0.weight"])
    before = eval_json(prerank, tmp_path / "swift", world, tmp_path)
    after = eval_json(prerank, tmp_path / "tuned", world, tmp_path)
    assert after["tasks"]["ctr"]["auc"] > before["tasks"]["ctr"]["auc"] - 0.02


# --- --weight-column ----------------------------------------------------------------------------

def with_weights(lines, weights, name="w"):
    return "\n".join([lines[0] + "," + name] + [l + "," + str(w) for l, w in zip(lines[1:], weights)]) + "\n"


def test_weight_column_two_equals_the_row_duplicated(prerank, world, small, tmp_path):
    """One step over the whole file: a row of weight 2 trains as that row twice. Fine-tuning a
    model (--init-model) keeps dense statistics and heads fixed, which a duplicated row would
    otherwise move. (A row of weight 0 is not the same as no row: its embedding rows are still
    touched, so L2 and lazy Adam still move them, as in prerank train's lazy Adam.)"""
    run(prerank, "train", "--features", world / "features.yaml", "--data", small, "--out", tmp_path / "base",
        "--epochs", 1, *SMALL)
    lines = (world / "train.csv").read_text().splitlines()[:301]
    weights = [1] * 300
    weights[3], weights[100] = 2, 2.0
    (tmp_path / "weighted.csv").write_text(with_weights(lines, weights))
    dup = [lines[0]] + [l for l, w in zip(lines[1:], weights) for _ in range(int(w))]
    (tmp_path / "dup.csv").write_text(with_weights(dup, [1] * (len(dup) - 1)))
    common = ["--init-model", tmp_path / "base", "--epochs", 1, "--batch", 1000, "--validation-fraction", 0,
              "--workers", 0, "--log-every", 0, "--no-checkpoint", "--weight-column", "w", "--lr", 0.01]
    torch_train_inprocess(*common, "--data", tmp_path / "weighted.csv", "--out", tmp_path / "weighted")
    torch_train_inprocess(*common, "--data", tmp_path / "dup.csv", "--out", tmp_path / "dup")
    a = load_file(str(tmp_path / "weighted" / "weights.safetensors"))
    b = load_file(str(tmp_path / "dup" / "weights.safetensors"))
    base = load_file(str(tmp_path / "base" / "weights.safetensors"))
    assert not np.array_equal(a["user.ctr.0.weight"], base["user.ctr.0.weight"])
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    spec = json.loads((tmp_path / "weighted" / "model.json").read_text())
    assert spec["training"]["weights"]["column"] == "w" and spec["training"]["weights"]["validation"] == "unweighted"


def test_weighted_batch_gradient_equals_the_duplicated_batch(world):
    """The trainer's batch loss with --weight-column: Σ w·ℓ / Σ w. Gradients (which Adam's
    scale invariance would hide in an end-to-end run) of a batch with weights 2, 1, 0.5, 0 equal
    those of the batch with each row repeated 4w times and unweighted."""
    from prerank_torch.data import Encoder as RowEncoder
    from prerank_torch.model import TwinTower
    from prerank_torch.spec import architecture, load_features
    from prerank_torch.train import Dist, batch_loss
    tasks, features = load_features(str(world / "features.yaml"))
    model = TwinTower(tasks, features, architecture("resflow", [8], 4, False))
    model.initialise_as_prerank_train(3, positives=[100, 10, 2], rows=1000)
    enc = RowEncoder(tasks, features)
    block = concat([b for b, _ in iterate_blocks([str(world / "train.csv")], enc, 0, 1, 0.0, "all", chunk=64)][:1])
    from prerank_torch.data import take
    block = take(block, np.arange(40))
    w = np.tile(np.array([2.0, 1.0, 0.5, 0.0], dtype=np.float32), 10)
    block["weight"] = w
    reps = (w * 4).astype(int)
    dup = take(block, np.repeat(np.arange(40), reps))
    del dup["weight"]
    arch, pw, d = model.arch, torch.ones(3), Dist(None)

    def grads(b, weighted):
        batch = to_batch(b, 3)
        batch["weights"] = torch.full((b["n"],), 1.0 / b["n"])
        model.zero_grad(set_to_none=True)
        batch_loss(model(batch), batch, arch, pw, d, weighted).backward()
        return {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone() for n, p in model.named_parameters()}

    a, b = grads(block, True), grads(dup, False)
    assert float(a["towers.head"].abs().sum()) > 0
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-7, msg=n)


def test_bad_weights_stop_with_one_line_naming_file_line_and_column(world, tmp_path, capsys):
    lines = (world / "train.csv").read_text().splitlines()[:60]
    base = ["--features", world / "features.yaml", "--out", tmp_path / "m", "--workers", 0, "--weight-column", "w", *SMALL]
    for bad in ("-1", "nan", "inf", "abc", "", "1e999"):
        weights = [1] * 59
        weights[9] = bad  # line 11
        f = tmp_path / "bad-weight.csv"
        f.write_text(with_weights(lines, weights))
        e = inprocess_error(capsys, *base, "--data", f)
        assert str(f) in e and "line 11" in e and "column w" in e and "weight" in e, (bad, e)
    (tmp_path / "no-w.csv").write_text("\n".join(lines) + "\n")
    e = inprocess_error(capsys, *base, "--data", tmp_path / "no-w.csv")
    assert str(tmp_path / "no-w.csv") in e and "line 1" in e and "w" in e, e


# --- bad input --------------------------------------------------------------------------------

def one_line_error(p):
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), p.stderr
    return lines[0]


def test_bad_input_stops_with_one_line_naming_file_line_and_field(world, tmp_path, capsys):
    lines = (world / "train.csv").read_text().splitlines()
    header = lines[0].split(",")
    click = header.index("click")
    base = ["--features", world / "features.yaml", "--out", tmp_path / "m", "--workers", 0, *SMALL]

    bad = tmp_path / "bad-label.csv"
    rows = [l.split(",") for l in lines[1:50]]
    rows[6][click] = "2"  # line 8
    bad.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    e = one_line_error(torch_train(*base, "--data", bad, check=False))
    assert str(bad) in e and "line 8" in e and "click" in e

    missing = tmp_path / "no-order.csv"
    order = header.index("order")
    missing.write_text("\n".join(",".join(c for i, c in enumerate(l.split(",")) if i != order) for l in lines[:50]) + "\n")
    e = inprocess_error(capsys, *base, "--data", missing)
    assert str(missing) in e and "line 1" in e and "order" in e

    e = inprocess_error(capsys, *base, "--data", world / "train.csv", "--arch", "transformer")
    assert "--arch" in e and "transformer" in e

    good = (world / "features.yaml").read_text()
    for mutate, expect in ((lambda t: t.replace("kind: categorical", "kind: sparse", 1), "kind"),
                           (lambda t: t.replace("buckets:", "bucket:", 1), "bucket"),
                           (lambda t: t + "extra: 1\n", "unknown key extra")):
        f = tmp_path / "features.yaml"
        f.write_text(mutate(good))
        bad_line = next((i + 1 for i, (x, y) in enumerate(zip(good.splitlines(), mutate(good).splitlines())) if x != y),
                        len(good.splitlines()) + 1)
        e = inprocess_error(capsys, "--features", f, "--data", world / "train.csv", "--out", tmp_path / "m")
        assert str(f) in e and f"line {bad_line}" in e and expect in e, e


# --- exactness across processes (issue 24) ------------------------------------------------------

def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step(features_yaml, train_csv, rows, world, rank, port):
    """One TrainStep of the global batch `rows` (every row of the first 61 of train_csv, ids on,
    admission on) as rank `rank` of `world` takes it: this rank's rows are i ≡ rank (mod world),
    each weighing world / n (the trainer's --shuffle full). Returns the synchronised gradients
    (dense; sparse tables densified), the weights after the update, and the loss share."""
    from prerank_torch.data import Encoder as RowEncoder, take
    from prerank_torch.model import PrerankAdam
    from prerank_torch.spec import architecture, load_features
    from prerank_torch.step import TrainStep
    from prerank_torch.train import Dist
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                          LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    d = Dist("cpu")
    try:
        tasks, features = load_features(features_yaml)
        model = TwinTower(tasks, features, architecture("resflow", [16, 8], 8, False), oov=True)
        model.initialise_as_prerank_train(11, positives=[10, 3, 1], rows=rows)
        for i, b in enumerate(model.encoder.buckets):  # admission: every third bucket shares the OOV row
            model.encoder.admit(i, np.arange(b) % 3 != 0)
        enc = RowEncoder(tasks, features)
        block = concat([b for b, _ in iterate_blocks([train_csv], enc, 0, 1, 0.0, "all", chunk=rows)][:1])
        mine = take(block, np.arange(rank, rows, world))
        towers = model.towers
        if d.on:
            from torch.nn.parallel import DistributedDataParallel as DDP
            towers = DDP(model.towers)
        opt_dense = PrerankAdam(model.towers.parameters(), lr=0.01)
        opt_sparse = torch.optim.SparseAdam([t.weight for t in model.encoder.tables], lr=0.01)
        step = TrainStep(model, towers, opt_dense, opt_sparse, torch.ones(len(tasks)), d, False, 1e-4)
        batch = to_batch(mine, len(tasks))
        batch["weights"] = torch.full((mine["n"],), world / rows)
        loss = float(step.gradients(batch))
        grads = {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        step.update()
        return grads, {n: p.detach().clone() for n, p in model.named_parameters()}, loss
    finally:
        d.close()


def _one_step_worker(rank, world, port, features_yaml, train_csv, rows, out):
    grads, params, loss = _one_step(features_yaml, train_csv, rows, world, rank, port)
    torch.save({"grads": grads, "params": params, "loss": loss}, f"{out}.{rank}")


def _replica_worker(rank, world, port, out):
    """check_replicas on two ranks: equal tensors pass; one element of rank 1's differing by one
    ulp fails on both ranks, naming the tensor."""
    from prerank_torch.distributed import check_replicas
    from prerank_torch.errors import TrainingError
    from prerank_torch.train import Dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    d = Dist("cpu")
    try:
        torch.manual_seed(0)
        named = {"a": torch.randn(1000, 8), "emb.item_id": torch.randn(5000, 4)}
        result = {"equal": check_replicas(named, d)}
        if rank == 1:
            named["emb.item_id"][4321, 3] = torch.nextafter(named["emb.item_id"][4321, 3], torch.tensor(10.0))
        try:
            check_replicas(named, d)
            result["different"] = None
        except TrainingError as e:
            result["different"] = str(e)
        torch.save(result, f"{out}.{rank}")
    finally:
        d.close()


def test_one_step_on_two_processes_equals_one_step_on_one(world, tmp_path):
    """The synchronised gradients (not only the weights: Adam's first step is lr·sign(g), which
    would hide a gradient off by a factor, e.g. a sparse sync dividing by the wrong count) of one
    step with two gloo processes, each holding its rows of the global batch (31 and 30 rows), equal
    those of one process on the whole batch — towers, heads and every embedding table, the OOV
    rows included; so do the weights after the step and the summed loss shares."""
    import torch.multiprocessing as mp
    rows = 61
    args = (str(world / "features.yaml"), str(world / "train.csv"), rows)
    mp.spawn(_one_step_worker, args=(2, _free_port(), *args, str(tmp_path / "step")), nprocs=2, join=True)
    one_grads, one_params, one_loss = _one_step(*args, 1, 0, 0)
    ranks = [torch.load(f"{tmp_path / 'step'}.{r}") for r in range(2)]
    assert sum(r["loss"] for r in ranks) / 2 == pytest.approx(one_loss, rel=1e-6)
    tables = [n for n in one_grads if n.startswith("encoder.tables")]
    assert tables and set(one_grads) == set(ranks[0]["grads"])
    for n, g in one_grads.items():
        assert float(g.abs().sum()) > 0, n
        for r in ranks:
            torch.testing.assert_close(r["grads"][n], g, rtol=1e-5, atol=1e-8, msg=n)
    for n, p in one_params.items():
        torch.testing.assert_close(ranks[0]["params"][n], p, rtol=1e-6, atol=1e-7, msg=n)
        assert torch.equal(ranks[0]["params"][n], ranks[1]["params"][n]), n  # replicas: the same bits


def test_check_replicas_names_the_tensor_that_differs(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_replica_worker, args=(2, _free_port(), str(tmp_path / "rep")), nprocs=2, join=True)
    for r in range(2):
        result = torch.load(f"{tmp_path / 'rep'}.{r}")
        assert result["equal"] == 2
        assert result["different"] is not None and "emb.item_id" in result["different"] and "rank 1" in result["different"]


def epoch_losses(stderr):
    """The loss of every progress line and epoch line, as printed (4 decimals)."""
    import re
    return re.findall(r"loss (\d+\.\d+)", stderr)


def test_two_processes_print_the_losses_and_train_the_weights_of_one(world, tmp_path):
    """2,048 rows, batch 512, 2 epochs (a warm-start epoch, then ids with dropout): torchrun with
    two processes prints the same running and epoch losses as one process (global figures, not
    rank 0's share: rank 0's rows alone printed 0.006 more on the issue's world) and writes the
    same weights to float rounding; the ranks check that they end bit-identical."""
    lines = (world / "train.csv").read_text().splitlines()[:2049]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(lines) + "\n")
    args = ["--features", world / "features.yaml", "--data", data, "--epochs", 2, "--batch", 512, "--seed", 3,
            "--hidden", "16,8", "--dim", 8, "--log-every", 1, "--no-checkpoint", "--workers", 0]
    one = torch_train(*args, "--out", tmp_path / "one")
    two = torch_train(*args, "--out", tmp_path / "two", nproc=2)
    assert "all 2 ranks hold identical weights" in two.stderr, two.stderr
    assert "1 thread(s) each" in one.stderr and "1 thread(s) each" in two.stderr  # the default
    a, b = epoch_losses(one.stderr), epoch_losses(two.stderr)
    assert len(a) >= 8 and a == b, (a, b)
    wa = load_file(str(tmp_path / "one" / "weights.safetensors"))
    wb = load_file(str(tmp_path / "two" / "weights.safetensors"))
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)


# --- devices, threads -----------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_error(world, tmp_path, capsys, device):
    e = inprocess_error(capsys, "--features", world / "features.yaml", "--data", world / "train.csv",
                        "--out", tmp_path / "m", "--device", device)
    assert f"--device {device}" in e and "CUDA is not available" in e, e


def test_bad_device_thread_and_timeout_values_are_one_line_errors(world, tmp_path, capsys):
    base = ["--features", world / "features.yaml", "--data", world / "train.csv", "--out", tmp_path / "m"]
    assert "--device" in inprocess_error(capsys, *base, "--device", "tpu")
    assert "--threads" in inprocess_error(capsys, *base, "--threads", 0)
    assert "--collective-timeout" in inprocess_error(capsys, *base, "--collective-timeout", 0)


def test_bad_schedule_values_are_one_line_errors_naming_the_flag(world, tmp_path, capsys):
    base = ["--features", world / "features.yaml", "--data", world / "train.csv", "--out", tmp_path / "m"]
    for value in ("soon", "-1", "2.5"):
        e = inprocess_error(capsys, *base, "--id-warmup-epochs", value)
        assert e == f"Error: --id-warmup-epochs must be auto or an integer ≥ 0, not {value}", e
    for value in ("0", "-0.1", "nan", "inf"):
        e = inprocess_error(capsys, *base, "--id-phase-lr-scale", value)
        assert "--id-phase-lr-scale must be > 0" in e and value in e, e
    assert "--patience must be ≥ 0, not -1" in inprocess_error(capsys, *base, "--patience", -1)


def test_default_threads_is_one_intra_op_thread(monkeypatch):
    from prerank_torch.train import configure_threads
    before = torch.get_num_threads()
    try:
        assert configure_threads(None) == 1 and torch.get_num_threads() == 1
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_collective_timeout_reaches_the_process_group(monkeypatch):
    import datetime
    from prerank_torch import distributed
    seen = {}
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: seen.update(b=backend, t=timeout))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    distributed.Dist("cpu", 42)
    assert seen == {"b": "gloo", "t": datetime.timedelta(seconds=42)}


# --- checkpoints and restarts -----------------------------------------------------------------------

def test_resume_refuses_a_checkpoint_of_other_settings(world, small, tmp_path, capsys):
    """A checkpoint resumes only the run it came from: a changed seed, batch, learning rate or data
    file is refused with one line naming the flag and both values (not silently continued)."""
    base = ["--features", world / "features.yaml", "--workers", 0, "--epochs", 1, "--batch", 256, "--seed", 5,
            "--log-every", 0, "--out", tmp_path / "m", *SMALL]
    torch_train_inprocess(*base, "--data", small, "--stop-after-steps", 2)
    for flag, value in (("--seed", 6), ("--batch", 128), ("--lr", 0.01)):
        changed = list(base)
        if flag in changed:
            changed[changed.index(flag) + 1] = value
        else:
            changed += [flag, value]
        e = inprocess_error(capsys, *changed, "--data", small, "--resume")
        assert "checkpoint.pt" in e and flag in e and str(value) in e, e
    other = tmp_path / "other.csv"
    other.write_text("\n".join(small.read_text().splitlines()[:-1]) + "\n")
    e = inprocess_error(capsys, *base, "--data", other, "--resume")
    assert "--data" in e and "other.csv" in e and small.name in e, e
    # The same settings resume (and finish the epoch).
    torch_train_inprocess(*base, "--data", small, "--resume")
    assert (tmp_path / "m" / "model.json").exists()


def test_a_run_that_hit_the_cap_trains_on_under_a_larger_epochs(world, tmp_path, capsys):
    """--epochs is only a cap: a checkpoint of a run that ended there (stopped "max_epochs")
    resumes under a larger --epochs and trains the epochs that adds; the schedule's other
    settings must stay the same."""
    lines = (world / "train.csv").read_text().splitlines()[:4097]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(lines) + "\n")
    base = ["--features", world / "features.yaml", "--data", data, "--batch", 512, "--seed", 3, "--workers", 0,
            "--log-every", 0, "--out", tmp_path / "m", *SMALL]
    torch_train_inprocess(*base, "--epochs", 2, "--patience", 5)
    first = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert first["stopped"] == "max_epochs" and first["epochs_run"] == 2
    assert first["schedule"]["id_warmup_ended"] == "max_epochs" and first["schedule"]["first_id_epoch"] == 2
    e = inprocess_error(capsys, *base, "--epochs", 3, "--patience", 5, "--id-phase-lr-scale", 0.5, "--resume")
    assert "checkpoint is not of this model" in e and "phase_lr_scale was 0.1, this run has 0.5" in e, e
    capsys.readouterr()
    torch_train_inprocess(*base, "--epochs", 3, "--patience", 5, "--resume")
    assert "resumed from" in capsys.readouterr().err
    more = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert more["epochs_run"] == 3 and more["stopped"] == "max_epochs" and more["schedule"]["max_epochs"] == 3
    assert more["schedule"]["first_id_epoch"] == 2 and more["ids"]["warmup_epochs"] == 1


def test_resume_refuses_a_checkpoint_from_before_the_schedule(world, tmp_path, capsys):
    """A prerank-torch-checkpoint/1 (no schedule state) is refused in one line before the data pass."""
    old = tmp_path / "old.pt"
    torch.save({"format": "prerank-torch-checkpoint/1", "epoch": 1, "step": 0}, old)
    e = inprocess_error(capsys, "--features", world / "features.yaml", "--data", world / "train.csv",
                        "--out", tmp_path / "m", "--resume", old)
    assert e == f"Error: {old}: checkpoint format prerank-torch-checkpoint/1, this trainer reads " \
                "prerank-torch-checkpoint/2; start afresh without --resume", e


def test_resume_refuses_another_process_count():
    from prerank_torch.checkpoint import check_resumable
    from prerank_torch.errors import InputError
    record = {"seed": 1, "batch": 512, "lr": 0.002, "world_size": 2, "data": [["train.csv", 10]]}
    check_resumable("ck.pt", {"run": dict(record)}, record)
    with pytest.raises(InputError, match="number of processes.*= 2, this run has 1"):
        check_resumable("ck.pt", {"run": record}, dict(record, world_size=1))
    with pytest.raises(InputError, match="older prerank_torch"):
        check_resumable("ck.pt", {}, record)


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous checkpoint whole and no temporary file;
    the new file is fsynced before it is renamed over the old one."""
    from prerank_torch import checkpoint as ck
    path = str(tmp_path / "ck.pt")
    ck.save_checkpoint(path, {"epoch": 1})
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(ck.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    ck.save_checkpoint(path, {"epoch": 2})
    assert ck.load_checkpoint(path) == {"epoch": 2} and len(synced) >= 1

    def torn(state, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ck.torch, "save", torn)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {"epoch": 3})
    assert ck.load_checkpoint(path) == {"epoch": 2}
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_torchrun_max_restarts_auto_resumes_after_a_crash(world, tmp_path):
    """Two processes; the job exits with status 75 after 5 steps (--crash-after-steps, a crash
    after a checkpoint); torchrun --max-restarts 1 starts it again and --auto-resume continues from
    the checkpoint. The weights equal an uninterrupted run's, bit for bit."""
    lines = (world / "train.csv").read_text().splitlines()[:4097]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(lines) + "\n")
    args = ["--features", world / "features.yaml", "--data", data, "--epochs", 2, "--batch", 512, "--seed", 3,
            "--hidden", "16,8", "--dim", 8, "--log-every", 0, "--workers", 0]
    torch_train(*args, "--out", tmp_path / "whole", nproc=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
           "-m", "prerank_torch", "train", *map(str, args), "--out", str(tmp_path / "cut"), "--auto-resume",
           "--crash-after-steps", "5"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "starting afresh (--auto-resume)" in p.stderr and "status 75 after 5 steps" in p.stderr, p.stderr[-3000:]
    assert "resumed from" in p.stderr and "at epoch 1, step 5" in p.stderr, p.stderr[-3000:]
    a = load_file(str(tmp_path / "whole" / "weights.safetensors"))
    b = load_file(str(tmp_path / "cut" / "weights.safetensors"))
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_two_nodes_over_loopback_train_what_one_process_trains(world, tmp_path):
    """The documented multi-node command, as two "nodes" on this machine: two torchrun agents
    (--nnodes 2 --nproc-per-node 1) meet through the c10d rendezvous on 127.0.0.1 and train the
    weights one process trains (float rounding apart), the ranks checked identical."""
    lines = (world / "train.csv").read_text().splitlines()[:2049]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(lines) + "\n")
    args = ["--features", world / "features.yaml", "--data", data, "--epochs", 1, "--batch", 512, "--seed", 3,
            "--hidden", "16,8", "--dim", 8, "--log-every", 0, "--no-checkpoint", "--workers", 0]
    torch_train_inprocess(*args, "--out", tmp_path / "one")
    port = _free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(n), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                               "--rdzv-id", "s5-two-nodes", "-m", "prerank_torch", "train", *map(str, args),
                               "--out", str(tmp_path / "nodes")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV) for n in range(2)]
    outs = [p.communicate(timeout=600) for p in nodes]
    assert all(p.returncode == 0 for p in nodes), [o[1][-2000:] for o in outs]
    assert any("all 2 ranks hold identical weights" in err for _, err in outs), outs[0][1][-2000:]
    a = load_file(str(tmp_path / "one" / "weights.safetensors"))
    b = load_file(str(tmp_path / "nodes" / "weights.safetensors"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
