"""The live catalog end to end (issue #15): POST /admin/items upserts and deletes over the mapped
index, durable in the update log (model.updates), replayed on restart, folded by
`build-index --updates`.

"Exactly as if it had been in items.csv": each answer is compared with `prerank score` on an
index built from the catalog *with* the upserted rows (same dtype, same quantisation), and the
new item's probabilities with numpy's item tower on the row (RefModel).
"""
import csv
import json
import os
import signal
import time

import numpy as np
import pytest

from prerank_ref import RefModel
from conftest import TOKEN, free_port, run, Server

NEW = [
    {"item_id": 900001, "item_category": "c3", "brand": "mive", "price": 9.9, "rating": 4.5},
    {"item_id": 900002, "item_category": "c7", "brand": "kalu", "price": 120.25, "rating": 3.0},
]
AUTH = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}


class World:
    """The fixture's directory (`world / "model"`) and its catalog's ids in file order."""
    def __init__(self, path, rows):
        self.path, self.rows = path, rows
        self.ids = [int(r["item_id"]) for r in rows]

    def __truediv__(self, other):
        return self.path / other


@pytest.fixture(scope="module")
def world(prerank, tmp_path_factory):
    w = tmp_path_factory.mktemp("live")
    run(prerank, "generate", "--out", w / "data", "--users", 200, "--items", 1500, "--requests", 10, "--candidates", 20,
        "--seed", 7, "--quiet")
    run(prerank, "init-model", "--features", w / "data" / "features.yaml", "--out", w / "model", "--hidden", "16,8", "--d", 8)
    (w / "token").write_text(TOKEN + "\n")
    rows = list(csv.DictReader(open(w / "data" / "items.csv")))
    w = World(w, rows)
    # The catalog as it is after the changes the tests make: NEW added, the second item
    # repriced, the third deleted.
    changed = dict(rows[1], price="777.5")
    header = list(rows[0].keys())
    with open(w / "after.csv", "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header)
        out.writeheader()
        for r in [rows[0], changed] + rows[3:]:
            out.writerow(r)
        for n in NEW:
            out.writerow({k: n[k] for k in header})
    for dtype in ("f32", "f16", "i8"):
        run(prerank, "build-index", "--model", w / "model", "--items", w / "data" / "items.csv", "--out", w / f"base-{dtype}.st",
            "--dtype", dtype)
        run(prerank, "build-index", "--model", w / "model", "--items", w / "after.csv", "--out", w / f"after-{dtype}.st", "--dtype", dtype)
    for suffix, items in (("base", "data/items.csv"), ("after", "after.csv")):
        run(prerank, "build-index", "--model", w / "model", "--items", w / items, "--out", w / f"{suffix}-i8r.st", "--dtype", "i8", "--rescore")
    return w


def config(path, world, port, index, updates, canary_index=None):
    canary = f"""canary:
  model: {{dir: {world / 'model'}, index: {canary_index}}}
  share: 1.0
""" if canary_index else ""
    path.write_text(f"""server:
  host: 127.0.0.1
  port: {port}
  admin_token_file: {world / 'token'}
model:
  dir: {world / 'model'}
  index: {index}
  updates: {updates}
fusion: {{formula: additive, alpha: 1.0, beta: 20.0, gamma: 0.0}}
logging: {{level: info, format: json}}
{canary}""")
    return path


def changes(world):
    """The three changes the tests make, in order."""
    return [
        {"upsert": NEW},
        {"upsert": [{"item_id": world.ids[1], "item_category": world.rows[1]["item_category"], "brand": world.rows[1]["brand"],
                     "price": 777.5, "rating": float(world.rows[1]["rating"])}]},
        {"delete": [world.ids[2]]},
    ]


def post_items(server, body, headers=AUTH):
    r, data = server.request("POST", "/admin/items", json.dumps(body), headers)
    return r.status, json.loads(data)


def prerank_answer(server, body):
    r, data = server.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})
    assert r.status == 200, data
    got = json.loads(data)
    got.pop("took_ms")
    return got


def score_answer(prerank, world, index, body, cfg, tmp_path):
    path = tmp_path / "req.json"
    path.write_text(json.dumps(body))
    got = json.loads(run(prerank, "score", "--model", world / "model", "--index", index, "--request", path, "--config", cfg).stdout)
    got.pop("took_ms")
    return got


def requests(world):
    cands = [900001, 900002] + world.ids[:40] + [123]
    return [
        {"request_id": "a", "user": {"user_id": "u3", "segment": "vip", "age": 30}, "candidates": cands, "k": 50, "debug": True},
        {"request_id": "b", "user": {"user_id": "u9"}, "k": 30, "debug": True},  # the whole index
    ]


def assert_same(got, expected):
    """Same items in the same order with the same probabilities (F32 rounding of the towers aside)."""
    assert [i["id"] for i in got["items"]] == [i["id"] for i in expected["items"]]
    assert sorted(got["unknown_ids"]) == sorted(expected["unknown_ids"])
    for a, b in zip(got["items"], expected["items"]):
        for t in b["tasks"]:
            assert a["tasks"][t] == pytest.approx(b["tasks"][t], rel=1e-6, abs=1e-9)
        assert a["score"] == pytest.approx(b["score"], rel=1e-6, abs=1e-9)


def start(prerank, world, tmp_path, index, canary_index=None):
    port = free_port()
    cfg = config(tmp_path / "prerank.yaml", world, port, index, tmp_path / "updates.log", canary_index)
    return Server(prerank, cfg, port), cfg


@pytest.mark.parametrize("dtype", ["f32", "f16", "i8", "i8r"])
def test_upserts_and_deletes_score_like_a_rebuilt_index(prerank, world, tmp_path, dtype):
    server, cfg = start(prerank, world, tmp_path, world / f"base-{dtype}.st")
    try:
        for i, change in enumerate(changes(world)):
            status, body = post_items(server, change)
            assert status == 200, body
            assert body["sequence"] == i + 1
        assert body == {"upserted": 0, "deleted": 1, "not_found": 0, "items": 1500 + 2 - 1, "sequence": 3}
        for req in requests(world):
            got = prerank_answer(server, req)
            expected = score_answer(prerank, world, world / f"after-{dtype}.st", req, cfg, tmp_path)
            assert_same(got, expected)
            assert world.ids[2] not in [i["id"] for i in got["items"]]
        got = prerank_answer(server, requests(world)[0])
        assert world.ids[2] in got["unknown_ids"] and 123 in got["unknown_ids"]
        model = json.loads(server.request("GET", "/v1/model")[1])["model"]["index"]["catalog"]
        assert model == {"base_items": 1500, "delta_items": 3, "deleted_ids": 1, "hidden_base_items": 2, "items": 1501,
                         "sequence": 3, "base_sequence": 0}
        metrics = server.request("GET", "/metrics")[1].decode()
        assert 'prerank_index_delta_items{arm="primary"} 3' in metrics
        assert 'prerank_index_deleted_items{arm="primary"} 1' in metrics
        assert 'prerank_updates_sequence{arm="primary"} 3' in metrics
        assert 'prerank_item_updates_total{result="ok"} 3' in metrics
    finally:
        assert server.stop() == 0


def test_new_item_probabilities_are_numpys(prerank, world, tmp_path):
    server, _ = start(prerank, world, tmp_path, world / "base-f32.st")
    try:
        assert post_items(server, {"upsert": NEW})[0] == 200
        user = {"user_id": "u3", "segment": "vip", "age": 30}
        got = prerank_answer(server, {"user": user, "candidates": [900001, 900002], "k": 2, "debug": True})
        ref = RefModel(str(world / "model"))
        u = ref.tower("user", ref.encode("user", user))
        for item in got["items"]:
            row = next(n for n in NEW if n["item_id"] == item["id"])
            v = ref.tower("item", ref.encode("item", row))
            p = ref.probabilities(u, v)
            # F32 error model: u and v rounded to float32, ~1.2e-7 · Σ|u_i v_i| per logit.
            cond = float(np.sum(np.abs(u * v)))
            for k, t in enumerate(ref.tasks):
                assert abs(item["tasks"][t] - p[k]) <= 4e-7 * (1 + cond) * (k + 1), (t, item["tasks"][t], p[k])
    finally:
        assert server.stop() == 0


def test_bad_row_names_the_field_and_applies_nothing(prerank, world, tmp_path):
    server, _ = start(prerank, world, tmp_path, world / "base-f32.st")
    try:
        bad = {"upsert": [NEW[0], dict(NEW[1], price="cheap")], "delete": [world.ids[0]]}
        status, body = post_items(server, bad)
        assert status == 400 and body["error"]["field"] == "upsert[1].price", body
        status, body = post_items(server, {"upsert": [{"item_category": "c1"}]})
        assert status == 400 and body["error"]["field"] == "upsert[0].item_id", body
        status, body = post_items(server, {"upsert": NEW}, headers={"Content-Type": "application/json"})
        assert status == 401, body
        status, body = post_items(server, {"upsert": NEW}, headers={"Authorization": "Bearer wrong-token-123"})
        assert status == 401, body
        got = prerank_answer(server, {"user": {}, "candidates": [900001, world.ids[0]], "k": 5})
        assert got["unknown_ids"] == [900001] and [i["id"] for i in got["items"]] == [world.ids[0]]
        status, body = post_items(server, {"delete": [world.ids[0]]})
        assert status == 200 and body["sequence"] == 1, body  # nothing was logged before
        metrics = server.request("GET", "/metrics")[1].decode()
        assert 'prerank_item_updates_total{result="invalid"} 2' in metrics
        assert 'prerank_item_updates_total{result="unauthorized"} 2' in metrics
    finally:
        assert server.stop() == 0


def test_restart_replays_and_a_torn_tail_is_dropped(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path, world / "base-f32.st")
    log = tmp_path / "updates.log"
    try:
        for change in changes(world)[:2]:
            assert post_items(server, change)[0] == 200
        before = [prerank_answer(server, r) for r in requests(world)]
    finally:
        assert server.stop() == 0
    # SIGTERM + restart: the log is replayed.
    server = Server(prerank, cfg, server.port)
    try:
        assert [prerank_answer(server, r) for r in requests(world)] == before
        # kill -9 between two upserts, the second torn while it was written.
        assert post_items(server, changes(world)[2])[0] == 200
        after = [prerank_answer(server, r) for r in requests(world)]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        if server.proc.poll() is None:
            server.stop()
    good = log.read_bytes()
    torn = good + (100).to_bytes(4, "little") + (4).to_bytes(8, "little") + b"\0\0\0\0" + b'{"upsert":[{"item'
    log.write_bytes(torn)
    server = Server(prerank, cfg, server.port)
    try:
        assert [prerank_answer(server, r) for r in requests(world)] == after
        text = open(str(cfg) + ".log").read()
        assert "torn" in text, text
        assert log.read_bytes() == good  # the tail was cut before anything new is appended
        status, body = post_items(server, {"delete": [900001]})
        assert status == 200 and body["sequence"] == 4
    finally:
        assert server.stop() == 0


def test_build_index_updates_then_reload_answers_the_same(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path, world / "base-i8r.st")
    log = tmp_path / "updates.log"
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        before = [prerank_answer(server, r) for r in requests(world)]
        folded = tmp_path / "folded.st"
        run(prerank, "build-index", "--model", world / "model", "--items", world / "data" / "items.csv", "--updates", log,
            "--out", folded, "--dtype", "i8", "--rescore")
        info = json.loads(run(prerank, "inspect", folded, "--json", "--updates", log).stdout)
        assert info["updates_sequence"] == 3 and info["catalog"]["delta_items"] == 0 and info["catalog"]["items"] == 1501
        cfg.write_text(cfg.read_text().replace(str(world / "base-i8r.st"), str(folded)))
        r, data = server.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
        assert r.status == 200, data
        catalog = json.loads(server.request("GET", "/v1/model")[1])["model"]["index"]["catalog"]
        assert catalog["base_sequence"] == 3 and catalog["delta_items"] == 0 and catalog["items"] == 1501
        for r, b in zip(requests(world), before):
            assert_same(prerank_answer(server, r), b)
        # Changes after the fold still apply on top of the new base, and survive another reload.
        status, body = post_items(server, {"delete": [900002]})
        assert status == 200 and body["sequence"] == 4 and body["items"] == 1500
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        got = prerank_answer(server, requests(world)[0])
        assert 900002 in got["unknown_ids"]
    finally:
        assert server.stop() == 0


def test_canary_gets_the_changes_too(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path, world / "base-f32.st", canary_index=world / "base-f16.st")
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        req = requests(world)[0]
        got = prerank_answer(server, req)  # share 1.0: the canary answers
        assert_same(got, score_answer(prerank, world, world / "after-f16.st", req, cfg, tmp_path))
        metrics = server.request("GET", "/metrics")[1].decode()
        assert 'prerank_index_delta_items{arm="canary"} 3' in metrics
    finally:
        assert server.stop() == 0


def test_upsert_items_cli_sends_a_csv_in_batches(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path, world / "base-f32.st")
    try:
        header = list(world.rows[0].keys())
        with open(tmp_path / "new.csv", "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=header)
            out.writeheader()
            for n in NEW:
                out.writerow({k: n[k] for k in header})
            row = dict(world.rows[1], price="777.5")
            out.writerow(row)
        (tmp_path / "gone.txt").write_text(f"{world.ids[2]}\n")
        p = run(prerank, "upsert-items", "--url", f"http://127.0.0.1:{server.port}", "--token-file", world / "token",
                "--items", tmp_path / "new.csv", "--delete", tmp_path / "gone.txt", "--batch", 2)
        url = f"http://127.0.0.1:{server.port}"
        assert json.loads(p.stdout) == {"sent": 4, "replicas": [{"url": url, "items": 1501, "sequence": 3}]}, p.stdout
        assert "rows sent" in p.stderr
        for req in requests(world):
            assert_same(prerank_answer(server, req), score_answer(prerank, world, world / "after-f32.st", req, cfg, tmp_path))
        (tmp_path / "wrong").write_text("wrong-token-xyz\n")
        bad = run(prerank, "upsert-items", "--url", f"http://127.0.0.1:{server.port}", "--token-file", tmp_path / "wrong",
                  "--items", tmp_path / "new.csv", check=False)
        assert bad.returncode != 0 and "401" in bad.stderr
    finally:
        assert server.stop() == 0


def test_request_log_samples_dropped_candidates(prerank, world, tmp_path):
    port = free_port()
    cfg = config(tmp_path / "prerank.yaml", world, port, world / "base-f32.st", tmp_path / "updates.log")
    cfg.write_text(cfg.read_text() + f"""request_log:
  dir: {tmp_path / 'logs'}
  sample_rate: 1.0
  candidate_sample: 5
""")
    server = Server(prerank, cfg, port)
    try:
        assert post_items(server, {"upsert": NEW, "delete": [world.ids[5]]})[0] == 200
        body = {"request_id": "s1", "user": {"user_id": "u1"}, "candidates": world.ids[:30] + [900001, 900002, 42], "k": 10}
        got = prerank_answer(server, body)
        returned = {i["id"] for i in got["items"]}
    finally:
        assert server.stop() == 0
    import gzip
    lines = []
    for name in sorted(os.listdir(tmp_path / "logs")):
        path = tmp_path / "logs" / name
        data = gzip.open(path).read() if name.endswith(".gz") else path.read_bytes()
        lines += [json.loads(l) for l in data.decode().splitlines() if l]
    line = next(l for l in lines if l["request_id"] == "s1")
    dropped = line["dropped"]
    pool = 32 - 1 - 10  # known distinct candidates (ids[5] deleted, 42 unknown) minus the returned
    assert dropped["inclusion"] == pytest.approx(5 / pool)
    ids = [i["id"] for i in dropped["items"]]
    assert len(set(ids)) == 5 and not set(ids) & returned and world.ids[5] not in ids and 42 not in ids
    assert all(set(i["probabilities"]) == {"ctr", "atcr", "ctcvr"} for i in dropped["items"])


def log_payloads(path):
    """The payloads of an update log's records (docs/UPDATES.md format)."""
    data = path.read_bytes()
    assert data[:8] == b"PRKUPD01"
    out, o = [], 8
    while o < len(data):
        n = int.from_bytes(data[o:o + 4], "little")
        out.append((int.from_bytes(data[o + 4:o + 12], "little"), data[o + 20:o + 20 + n]))
        o += 20 + n
    return out


def test_the_log_holds_the_body_and_deletes_of_unknown_ids_are_not_recorded(prerank, world, tmp_path):
    """Issue #21 "bounded growth": the log stores the validated request body as it came (no
    second JSON encoding); deletes of ids no model holds are answered in not_found, take no
    sequence number, and grow neither the log nor deleted_ids."""
    server, cfg = start(prerank, world, tmp_path, world / "base-f32.st")
    log = tmp_path / "updates.log"
    try:
        body = b'{ "upsert" : [ {"item_id": 900001, "item_category": "c3", "price": 9.9} ] ,\n "delete": [%d] }' % world.ids[2]
        r, data = server.request("POST", "/admin/items", body, AUTH)
        assert r.status == 200 and json.loads(data)["sequence"] == 1, data
        assert log_payloads(log) == [(1, body)]
        size = log.stat().st_size
        for _ in range(3):
            status, got = post_items(server, {"delete": [123456789, 987654321, world.ids[2]]})  # ids[2] is deleted already
            assert status == 200 and got == {"upserted": 0, "deleted": 0, "not_found": 3, "items": 1500, "sequence": 1}, got
        assert log.stat().st_size == size
        catalog = json.loads(server.request("GET", "/v1/model")[1])["model"]["index"]["catalog"]
        assert catalog["deleted_ids"] == 1 and catalog["sequence"] == 1
        # A change with held and unknown deletes: the unknown ones are left out of the record.
        status, got = post_items(server, {"delete": [world.ids[3], 555555555]})
        assert status == 200 and got["deleted"] == 1 and got["not_found"] == 1 and got["sequence"] == 2, got
        assert json.loads(log_payloads(log)[1][1]) == {"upsert": [], "delete": [world.ids[3]]}
        before = [prerank_answer(server, r) for r in requests(world)]
    finally:
        assert server.stop() == 0
    server = Server(prerank, cfg, server.port)
    try:
        assert [prerank_answer(server, r) for r in requests(world)] == before
        catalog = json.loads(server.request("GET", "/v1/model")[1])["model"]["index"]["catalog"]
        assert catalog["deleted_ids"] == 2 and catalog["sequence"] == 2
    finally:
        assert server.stop() == 0
