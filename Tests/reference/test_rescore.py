"""Quantised indexes with exact rescoring, and the I8 integer arithmetic, against numpy.

Indexes are written by `prerank build-index` (Swift) and read here with the official safetensors
reader; answers come from `prerank score` (the server's path) and are checked against the numpy
reference (prerank_ref.py) and against the F32 index's answers.
"""
import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import prerank_ref as ref
from conftest import run
from test_model_core import write_config, FUSIONS

N_ITEMS = 6000


@pytest.fixture(scope="module")
def world(prerank, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rescore")
    model_dir = tmp / "model"
    ref.random_model(str(model_dir), hidden=(16, 8), d=24, seed=31, item_buckets=20011)
    catalog = tmp / "items.csv"
    ids = ref.write_catalog(str(catalog), N_ITEMS, seed=8, sparse=True)
    paths = {"f32": tmp / "f32.st", "i8": tmp / "i8.st", "i8r": tmp / "i8r.st", "f16r": tmp / "f16r.st"}
    for name, args in [("f32", ["--dtype", "f32"]), ("i8", ["--dtype", "i8"]),
                       ("i8r", ["--dtype", "i8", "--rescore"]), ("f16r", ["--dtype", "f16", "--rescore"])]:
        run(prerank, "build-index", "--model", model_dir, "--items", catalog, "--out", paths[name], *args)
    return dict(tmp=tmp, model=model_dir, catalog=catalog, ids=ids, paths=paths)


def requests(ids, seed):
    rng = np.random.default_rng(seed)
    out = []
    for r in range(6):
        cands = [int(x) for x in rng.choice(ids, 1500, replace=False)]
        req = {"request_id": f"r{r}", "user": {"user_id": f"u{r}", "segment": "gold", "age": 20 + 3 * r},
               "query": {"query_terms": [f"t{r}", "x"]}, "candidates": cands, "k": 50, "debug": True}
        if r == 1:
            req["relevance"] = [int(x) for x in rng.integers(0, 4, len(cands))]
        if r == 2:
            req["candidates"] = cands + [5, 7] + cands[:30]  # unknown ids and duplicates
        if r == 3:
            del req["candidates"]  # the whole index
        out.append(req)
    return out


def score(prerank, world, index, req, config):
    path = world["tmp"] / "req.json"
    path.write_text(json.dumps(req))
    return json.loads(run(prerank, "score", "--model", world["model"], "--index", index, "--request", path,
                          "--config", config).stdout)


def test_rescore_tensor_holds_the_f32_rows(world):
    f32 = load_file(str(world["paths"]["f32"]))
    for name, dtype in [("i8r", np.int8), ("f16r", np.float16)]:
        t = load_file(str(world["paths"][name]))
        assert np.array_equal(t["ids"], f32["ids"])
        assert t["vectors"].dtype == dtype and t["vectors"].shape == f32["vectors"].shape
        assert t["rescore"].dtype == np.float32
        assert np.array_equal(t["rescore"], f32["vectors"]), "rescore rows are the F32 index's rows, bit for bit"
        with safe_open(str(world["paths"][name]), "np") as f:
            assert f.metadata()["rescore"] == "f32"
    # The I8 rows are the symmetric per-vector quantisation of the same F32 rows.
    i8 = load_file(str(world["paths"]["i8r"]))
    v = f32["vectors"].astype(np.float64)
    scale = np.abs(v).max(axis=2) / 127
    assert np.allclose(i8["scales"], scale, rtol=1e-6, atol=0)
    safe = np.where(scale > 0, scale, 1)[..., None]
    assert np.all(np.abs(i8["vectors"] - v / safe) <= 0.5 + 1e-4)
    assert i8["vectors"].min() >= -127


def test_rescored_answers_are_the_f32_answers(prerank, world):
    full = world["tmp"] / "full.yaml"
    write_config(full, FUSIONS[0])
    with open(full, "a") as f:
        f.write(f"  rescore_depth: {N_ITEMS}\n")
    default = world["tmp"] / "default.yaml"
    write_config(default, FUSIONS[0])
    recalls = []
    for req in requests(world["ids"], seed=3):
        want = score(prerank, world, world["paths"]["f32"], req, full)
        for name in ("i8r", "f16r"):
            got = score(prerank, world, world["paths"][name], req, full)
            assert got["items"] == want["items"], f"{name} {req['request_id']}: rescoring every candidate is the F32 answer"
            assert got["unknown_ids"] == want["unknown_ids"]
            part = score(prerank, world, world["paths"][name], req, default)
            by_id = {i["id"]: i for i in want["items"]}
            for item in part["items"]:
                if item["id"] in by_id:
                    assert item == by_id[item["id"]], "a returned item carries the F32 probabilities and score"
            recalls.append(sum(i["id"] in by_id for i in part["items"]) / len(want["items"]))
    assert np.mean(recalls) >= 0.97


def test_int8_answers_stay_within_the_error_model(prerank, world):
    """I8 without rescore: each task logit of a returned item is within the stated bound of the
    numpy logit computed from the dequantised index rows (item quantisation is the index's; the
    user vector's quantisation adds at most (s_u / 2) · Σ|v| per dot product)."""
    model = ref.RefModel(str(world["model"]))
    t = load_file(str(world["paths"]["i8"]))
    row_of = {int(i): r for r, i in enumerate(t["ids"])}
    v_all = t["vectors"].astype(np.float64) * t["scales"].astype(np.float64)[..., None]
    config = world["tmp"] / "plain.yaml"
    write_config(config, FUSIONS[0])
    T = len(model.tasks)
    checked = 0
    for req in requests(world["ids"], seed=4):
        uq = dict(req.get("user", {}))
        uq.update(req.get("query", {}))
        u = model.tower("user", model.encode("user", uq))
        s_u = np.abs(u).max(axis=1) / 127
        ans = score(prerank, world, world["paths"]["i8"], req, config)
        for item in ans["items"]:
            v = v_all[row_of[item["id"]]]
            dots = np.einsum("kd,kd->k", u, v)
            bounds = s_u / 2 * np.abs(v).sum(axis=1) + 1e-5 * (1 + np.abs(u * v).sum(axis=1))
            logits, prev = [], 0.0
            for k, task in enumerate(model.tasks):
                r = dots[k] + float(model.w[f"head.{task}.bias"][0])
                prev = prev + r if (model.lr and k > 0) else r
                logits.append(prev)
            got = [item["tasks"][name] for name in model.tasks]
            for k in range(T):
                p = min(max(got[k], 1e-12), 1 - 1e-7)
                logit = np.log(p / (1 - p))
                allowed = bounds[: k + 1].sum() if model.lr else bounds[k]
                assert abs(logit - logits[k]) <= allowed + 1e-4 * (1 + abs(logits[k])), \
                    f"item {item['id']} task {k}: {logit} vs {logits[k]} (bound {allowed})"
                checked += 1
    assert checked > 500


def test_rescore_flag_and_inspect(prerank, world):
    p = run(prerank, "build-index", "--model", world["model"], "--items", world["catalog"], "--out",
            world["tmp"] / "x.st", "--dtype", "f32", "--rescore", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "--rescore" in p.stderr
    info = json.loads(run(prerank, "inspect", world["paths"]["i8r"], "--json").stdout)
    assert info["rescore"] == {"dtype": "f32", "bytes": N_ITEMS * 3 * 24 * 4}
    assert json.loads(run(prerank, "inspect", world["paths"]["i8"], "--json").stdout)["rescore"] is None
