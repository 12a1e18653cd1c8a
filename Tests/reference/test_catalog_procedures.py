"""Every operator procedure about the update log in docs/OPERATIONS.md and docs/UPDATES.md, run as
written against the real binary (issue #21): a change answered 200 survives each of them.

- fold the log into a new base, point model.index at it, SIGHUP, move the log away, send
  changes, restart;
- rotate the log (move it and let logrotate `create` an empty file), truncate it (`: >`);
- restore the log from a backup;
- one writer per log: a second server on the same log exits 1 with one `Error:` line;
- two replicas, each with its own log, fed by one `upsert-items` with two `--url`s;
- a canary with its own model and index, and a fusion-only canary (one tower pass per row).
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import uuid

from test_live_catalog import AUTH, NEW, changes, config, post_items, prerank_answer, requests, world  # noqa: F401
from conftest import TOKEN, free_port, run, Server

LOG = "updates.log"


def new_rows(world, n, start=910000):
    """`n` upserts of new ids (the first row's fields, repriced)."""
    row = {k: v for k, v in NEW[0].items() if k != "item_id"}
    return [{"upsert": [dict(row, item_id=start + i, price=1.0 + i)]} for i in range(n)]


def answers(server, world):
    return [prerank_answer(server, r) for r in requests(world)] + [
        prerank_answer(server, {"user": {"user_id": "u1"}, "candidates": list(range(910000, 910040)) + [world.ids[2]], "k": 50})]


def reload(server):
    r, data = server.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
    assert r.status == 200, data


def catalog(server):
    return json.loads(server.request("GET", "/v1/model")[1])["model"]["index"]["catalog"]


def wait_for(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def restart(prerank, server):
    assert server.stop() == 0
    return Server(prerank, server.config, server.port)


def fold(prerank, world, tmp_path, name="folded.st"):
    """docs/OPERATIONS.md "Fold the log into a new base": build-index --updates, inspect, point
    model.index at it, SIGHUP."""
    out = tmp_path / name
    run(prerank, "build-index", "--model", world / "model", "--items", world / "data" / "items.csv", "--updates", tmp_path / LOG,
        "--out", out)
    info = json.loads(run(prerank, "inspect", out, "--json", "--updates", tmp_path / LOG).stdout)
    assert info["catalog"]["delta_items"] == 0
    return out, info["updates_sequence"]


def point_and_hup(server, cfg, old_index, new_index, sequence):
    cfg.write_text(cfg.read_text().replace(str(old_index), str(new_index)))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: catalog(server)["base_sequence"] == sequence, "the reload onto the folded base")


def start(prerank, world, tmp_path, canary_index=None):
    port = free_port()
    cfg = config(tmp_path / "prerank.yaml", world, port, world / "base-f32.st", tmp_path / LOG, canary_index)
    return Server(prerank, cfg, port), cfg


def test_fold_move_upsert_restart_loses_nothing(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path)
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        folded, sequence = fold(prerank, world, tmp_path)
        assert sequence == 3
        # A change between the fold and the move: in the log only, newer than the folded base.
        status, body = post_items(server, {"upsert": [dict(NEW[0], item_id=909999)]})
        assert status == 200 and body["sequence"] == 4
        point_and_hup(server, cfg, world / "base-f32.st", folded, 3)
        # "Once every replica serves a folded base, the log may be moved away."
        os.rename(tmp_path / LOG, tmp_path / (LOG + ".old"))
        for i, change in enumerate(new_rows(world, 30)):
            status, body = post_items(server, change)
            assert status == 200 and body["sequence"] == 5 + i, body
        before = answers(server, world)
        assert 909999 in [i["id"] for i in prerank_answer(server, {"user": {}, "candidates": [909999], "k": 1})["items"]]
        followed = [json.loads(l) for l in open(str(cfg) + ".log") if "a fresh log continues there" in l]
        assert len(followed) == 1 and followed[0]["carried_records"] == "1", followed
        server = restart(prerank, server)
        assert answers(server, world) == before
        assert catalog(server)["sequence"] == 34
        # The fresh log holds the carried change and the 30 new ones, nothing twice.
        info = json.loads(run(prerank, "inspect", folded, "--json", "--updates", tmp_path / LOG).stdout)
        assert info["catalog"]["records"] == 31 and info["catalog"]["records_applied"] == 31, info
    finally:
        server.stop()


def test_rotate_with_an_empty_file_created_then_restart(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path)
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        # logrotate with `create`: the log is renamed and an empty file put at the path. Nothing
        # was folded: the old file's records are carried into the new one.
        os.rename(tmp_path / LOG, tmp_path / (LOG + ".1"))
        (tmp_path / LOG).write_bytes(b"")
        for i, change in enumerate(new_rows(world, 5)):
            status, body = post_items(server, change)
            assert status == 200 and body["sequence"] == 4 + i, body
        before = answers(server, world)
        followed = [json.loads(l) for l in open(str(cfg) + ".log") if "a fresh log continues there" in l]
        assert len(followed) == 1 and followed[0]["carried_records"] == "3", followed
        server = restart(prerank, server)
        assert answers(server, world) == before
        assert catalog(server)["sequence"] == 8
    finally:
        server.stop()


def test_truncate_after_fold_then_restart(prerank, world, tmp_path):
    """docs/UPDATES.md: a folded log can be truncated (`: > updates.log`) while the server runs."""
    server, cfg = start(prerank, world, tmp_path)
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        folded, _ = fold(prerank, world, tmp_path)
        point_and_hup(server, cfg, world / "base-f32.st", folded, 3)
        with open(tmp_path / LOG, "w"):
            pass
        for i, change in enumerate(new_rows(world, 3)):
            status, body = post_items(server, change)
            assert status == 200 and body["sequence"] == 4 + i, body
        data = (tmp_path / LOG).read_bytes()
        assert data.startswith(b"PRKUPD01") and b"\0" * 16 not in data[:64]  # no zeros before the first record
        before = answers(server, world)
        server = restart(prerank, server)
        assert answers(server, world) == before
    finally:
        server.stop()


def test_truncate_before_fold_refuses_changes_until_reload(prerank, world, tmp_path):
    """Truncating a log whose changes are not folded loses them from disk: the server answers 503
    rather than 200s that a restart would serve without the earlier changes; a reload makes the
    file the truth, and the next start works."""
    server, cfg = start(prerank, world, tmp_path)
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        with open(tmp_path / LOG, "w"):
            pass
        status, body = post_items(server, new_rows(world, 1)[0])
        assert status == 503 and body["error"]["code"] == "update_log_changed", body
        assert "truncated" in body["error"]["message"]
        status, body = post_items(server, new_rows(world, 1)[0])
        assert status == 503  # until a reload
        reload(server)
        assert catalog(server)["delta_items"] == 0  # the log is the truth: the truncation removed the changes
        status, body = post_items(server, new_rows(world, 1)[0])
        assert status == 200 and body["sequence"] == 4, body
        before = answers(server, world)
        server = restart(prerank, server)
        assert answers(server, world) == before
    finally:
        server.stop()


def test_restore_from_a_backup(prerank, world, tmp_path):
    """docs/OPERATIONS.md "Restore the log from a backup": copy the backup over the log, reload."""
    server, cfg = start(prerank, world, tmp_path)
    try:
        for change in changes(world)[:2]:
            assert post_items(server, change)[0] == 200
        shutil.copy(tmp_path / LOG, tmp_path / "backup.log")
        expected = answers(server, world)
        assert post_items(server, changes(world)[2])[0] == 200
        shutil.copy(tmp_path / "backup.log", tmp_path / LOG)  # in place: same inode, other bytes
        status, body = post_items(server, new_rows(world, 1)[0])
        assert status == 503 and body["error"]["code"] == "update_log_changed", body
        reload(server)
        assert answers(server, world) == expected
        status, body = post_items(server, new_rows(world, 1)[0])
        assert status == 200 and body["sequence"] == 4, body  # sequences never go back
        after = answers(server, world)
        server = restart(prerank, server)
        assert answers(server, world) == after
    finally:
        server.stop()


def test_a_second_server_on_the_same_log_is_refused(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path)
    try:
        assert post_items(server, changes(world)[0])[0] == 200
        port = free_port()
        other = config(tmp_path / "second.yaml", world, port, world / "base-f32.st", tmp_path / LOG)
        p = subprocess.run([prerank, "serve", "--config", str(other)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, p.stderr
        errors = [l for l in p.stderr.splitlines() if l.startswith("Error:")]
        assert len(errors) == 1 and "another process is writing this update log" in errors[0], p.stderr
        # The first server is untouched.
        status, body = post_items(server, changes(world)[1])
        assert status == 200 and body["sequence"] == 2
    finally:
        server.stop()


def test_two_replicas_each_with_its_own_log(prerank, world, tmp_path):
    """docs/OPERATIONS.md "One writer per log": each replica its own log, every batch sent to
    each with `upsert-items --url A --url B`; both answer alike, also after a restart."""
    replicas = []
    try:
        for name in ("a", "b"):
            d = tmp_path / name
            d.mkdir()
            port = free_port()
            cfg = config(d / "prerank.yaml", world, port, world / "base-f32.st", d / LOG)
            replicas.append(Server(prerank, cfg, port))
        # Replica b already deleted one of the ids: there the same delete is not_found and takes
        # no sequence number, so both end at 4 (b: its own delete, 2 upserts, 1 delete).
        assert post_items(replicas[1], {"delete": [world.ids[7]]})[0] == 200
        header = list(world.rows[0].keys())
        lines = [",".join(header)] + [",".join(str(n[k]) for k in header) for n in NEW]
        (tmp_path / "new.csv").write_text("\n".join(lines) + "\n")
        (tmp_path / "gone.txt").write_text(f"{world.ids[2]}\n{world.ids[7]}\n")
        urls = [f"http://127.0.0.1:{r.port}" for r in replicas]
        p = run(prerank, "upsert-items", "--url", urls[0], "--url", urls[1], "--token-file", world / "token",
                "--items", tmp_path / "new.csv", "--delete", tmp_path / "gone.txt", "--batch", 1)
        out = json.loads(p.stdout)
        assert out == {"sent": 4, "replicas": [{"url": urls[0], "items": 1500, "sequence": 4},
                                               {"url": urls[1], "items": 1500, "sequence": 4}]}, out
        for r in replicas:
            assert (r.config.parent / LOG).exists()
        assert answers(replicas[0], world) == answers(replicas[1], world)
        replicas = [restart(prerank, r) for r in replicas]
        assert answers(replicas[0], world) == answers(replicas[1], world)
        # A replica that refuses a batch stops the run and is named; the other has it applied.
        bad = run(prerank, "upsert-items", "--url", urls[0], "--url", "http://127.0.0.1:1", "--token-file", world / "token",
                  "--items", tmp_path / "new.csv", check=False)
        assert bad.returncode != 0 and "http://127.0.0.1:1" in bad.stderr and f"applied on {urls[0]}" in bad.stderr, bad.stderr
    finally:
        for r in replicas:
            r.stop()


def tower_rows(cfg):
    """`tower_rows` of the server's last "items updated" log line."""
    lines = [json.loads(l) for l in open(str(cfg) + ".log") if '"items updated"' in l]
    return int(lines[-1]["tower_rows"])


def test_a_fusion_only_canary_costs_one_tower_pass(prerank, world, tmp_path):
    """Issue #21 "work done once": a canary with `fusion` alone serves the primary's model and
    index; each change is embedded once (counted), the arms share one delta, and a restart
    replays once."""
    server, cfg = start(prerank, world, tmp_path)
    cfg.write_text(cfg.read_text() + "canary:\n  fusion: {beta: 5.0}\n  share: 0.5\n  key: request_id\n")
    server = restart(prerank, server)
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        assert tower_rows(cfg) == 3  # 2 + 1 upserted rows, one pass each
        metrics = server.request("GET", "/metrics")[1].decode()
        assert 'prerank_index_delta_items{arm="canary"} 3' in metrics and 'prerank_index_delta_items{arm="primary"} 3' in metrics
        seen = set()
        for i in range(40):
            # Random ids: the arm hash (FNV-1a's top bits) barely moves with a last-character change.
            got = prerank_answer(server, dict(requests(world)[0], request_id=str(uuid.uuid4())))
            seen.add(got["arm"])
            assert world.ids[2] not in [x["id"] for x in got["items"]] and 900001 in [x["id"] for x in got["items"]]
        assert seen == {"primary", "canary"}
        server = restart(prerank, server)
        replayed = [json.loads(l) for l in open(str(cfg) + ".log") if '"update log replayed"' in l]
        assert replayed[-1]["records"] == "primary+canary=3" and replayed[-1]["tower_rows"] == "3", replayed
    finally:
        server.stop()


def test_a_canary_with_its_own_model_gets_every_change(prerank, world, tmp_path):
    """A canary with its own model and index: each change embedded by each model (two passes),
    replayed onto each after a restart, and a delete only the canary's catalog holds is applied
    there, not counted as not_found."""
    server, cfg = start(prerank, world, tmp_path, canary_index=world / "base-f16.st")
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        assert tower_rows(cfg) == 6
        status, body = post_items(server, {"delete": [123456789]})
        assert status == 200 and body["not_found"] == 1 and body["deleted"] == 0 and body["sequence"] == 3, body
        before = [prerank_answer(server, r) for r in requests(world)]
        server = restart(prerank, server)
        assert [prerank_answer(server, r) for r in requests(world)] == before
        replayed = [json.loads(l) for l in open(str(cfg) + ".log") if '"update log replayed"' in l]
        assert replayed[-1]["records"] == "primary=3,canary=3", replayed
    finally:
        server.stop()


def metric(server, name):
    text = server.request("GET", "/metrics")[1].decode()
    values = [float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " ") or l.startswith(name + "{")]
    return values[0] if values else None


def test_update_log_metrics_describe_the_file(prerank, world, tmp_path):
    server, cfg = start(prerank, world, tmp_path)
    try:
        t0 = time.time()
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        assert metric(server, "prerank_updates_log_bytes") == (tmp_path / LOG).stat().st_size
        assert t0 - 1 <= metric(server, "prerank_updates_log_last_append_timestamp_seconds") <= time.time() + 1
        assert metric(server, "prerank_item_tower_rows_total") == 3
        with open(tmp_path / LOG, "w"):
            pass
        assert post_items(server, new_rows(world, 1)[0])[0] == 503
        assert metric(server, 'prerank_item_updates_total{result="failed"}') == 1
    finally:
        server.stop()


def test_tools_refuse_a_missing_log_unless_allowed(prerank, world, tmp_path):
    missing = tmp_path / "typo.log"
    for args in (["build-index", "--model", world / "model", "--items", world / "data" / "items.csv", "--out", tmp_path / "x.st"],
                 ["inspect", world / "base-f32.st"]):
        p = run(prerank, *args, "--updates", missing, check=False)
        assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("Error:") and "typo.log" in p.stderr, p.stderr
        assert run(prerank, *args, "--updates", missing, "--allow-missing-updates").returncode == 0


def test_validate_config_checks_the_log_can_be_written(prerank, world, tmp_path):
    port = free_port()
    ok = config(tmp_path / "ok.yaml", world, port, world / "base-f32.st", tmp_path / "state" / LOG)
    p = run(prerank, "validate-config", ok, check=False)
    assert p.returncode == 1 and "model.updates" in p.stderr and "does not exist" in p.stderr, p.stderr
    (tmp_path / "state").mkdir()
    assert run(prerank, "validate-config", ok).returncode == 0
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "state").chmod(0o555)
        p = run(prerank, "validate-config", ok, check=False)
        assert p.returncode == 1 and "not writable" in p.stderr, p.stderr


def test_upsert_items_speaks_tls_and_keeps_the_token_off_the_wire(prerank, world, tmp_path):
    if shutil.which("openssl") is None:
        import pytest
        pytest.skip("openssl CLI not installed")
    import ssl
    for name in ("server", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / f"{name}.key",
                        "-out", tmp_path / f"{name}.crt", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    port = free_port()
    cfg = config(tmp_path / "prerank.yaml", world, port, world / "base-f32.st", tmp_path / LOG)
    cfg.write_text(cfg.read_text().replace("  admin_token_file:", f"  tls: {{cert: {tmp_path / 'server.crt'}, key: {tmp_path / 'server.key'}}}\n  admin_token_file:"))
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([prerank, "serve", "--config", str(cfg)], stdout=log, stderr=log)
    try:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
        deadline = time.time() + 30
        while True:
            try:
                import socket
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=2), server_hostname="127.0.0.1"):
                    break
            except OSError:
                assert time.time() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.1)
        (tmp_path / "gone.txt").write_text(f"{world.ids[2]}\n")
        base = ["upsert-items", "--token-file", world / "token", "--delete", tmp_path / "gone.txt"]
        p = run(prerank, *base, "--url", f"https://127.0.0.1:{port}", "--ca-file", tmp_path / "server.crt")
        assert json.loads(p.stdout)["replicas"][0]["sequence"] == 1
        (tmp_path / "gone.txt").write_text(f"{world.ids[3]}\n")
        p = run(prerank, *base, "--url", f"https://localhost:{port}", "--ca-file", tmp_path / "server.crt")
        assert json.loads(p.stdout)["replicas"][0]["sequence"] == 2
        # A certificate from another CA: refused before the token is sent.
        bad = run(prerank, *base, "--url", f"https://127.0.0.1:{port}", "--ca-file", tmp_path / "other.crt", check=False)
        assert bad.returncode == 1 and "certificate" in bad.stderr.lower(), bad.stderr
        # Plain HTTP to a server that is not this machine: refused, with or without --allow-remote.
        for extra in ([], ["--allow-remote"]):
            p = run(prerank, *base, "--url", "http://10.255.255.1:8080", *extra, check=False)
            assert p.returncode == 1 and "in clear" in p.stderr, p.stderr
        p = run(prerank, *base, "--url", "https://10.255.255.1:8443", check=False)
        assert p.returncode == 1 and "--allow-remote" in p.stderr, p.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_kill_9_during_an_upsert_stream_loses_no_acknowledged_change(prerank, world, tmp_path):
    """Issue #21 "done when": SIGKILL at random moments while batches stream in; after each
    restart every batch answered 200 is served, and the batch in flight is all there or absent."""
    import random
    import threading
    rng = random.Random(21)
    server, cfg = start(prerank, world, tmp_path)
    acked, attempted = [], []
    next_id = [920000]
    try:
        for round_ in range(6):
            stop = threading.Event()

            def stream():
                while not stop.is_set():
                    ids = list(range(next_id[0], next_id[0] + 20))
                    next_id[0] += 20
                    attempted.append(ids)
                    row = {k: v for k, v in NEW[0].items() if k != "item_id"}
                    try:
                        status, _ = post_items(server, {"upsert": [dict(row, item_id=i) for i in ids]})
                    except (OSError, ValueError, http.client.HTTPException):
                        return
                    if status == 200:
                        acked.append(ids)

            t = threading.Thread(target=stream)
            t.start()
            time.sleep(rng.uniform(0.05, 0.6))
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=10)
            stop.set()
            t.join(timeout=30)
            server = Server(prerank, cfg, server.port)
            every = [i for ids in attempted for i in ids]
            got = prerank_answer(server, {"user": {}, "candidates": every, "k": 1})
            unknown = set(got["unknown_ids"])
            for ids in acked:
                assert not unknown & set(ids), f"round {round_}: an acknowledged batch was lost"
            for ids in attempted:
                assert len(unknown & set(ids)) in (0, len(ids)), f"round {round_}: half a batch was kept"
        assert len(acked) >= 6
    finally:
        server.stop()


def test_pointing_model_updates_at_a_new_file_keeps_the_changes(prerank, world, tmp_path):
    """A config edit that names a new log file (another volume, a new directory) and a reload:
    the changes served but not folded are carried into the new log, sequences continue, and a
    restart serves them from it (the old file is no longer written)."""
    server, cfg = start(prerank, world, tmp_path)
    try:
        for change in changes(world):
            assert post_items(server, change)[0] == 200
        before = answers(server, world)
        (tmp_path / "new").mkdir()
        cfg.write_text(cfg.read_text().replace(str(tmp_path / LOG), str(tmp_path / "new" / LOG)))
        reload(server)
        assert answers(server, world) == before
        old_size = (tmp_path / LOG).stat().st_size
        status, body = post_items(server, new_rows(world, 1)[0])
        assert status == 200 and body["sequence"] == 4, body
        assert (tmp_path / LOG).stat().st_size == old_size
        after = answers(server, world)
        server = restart(prerank, server)
        assert answers(server, world) == after
        os.remove(tmp_path / LOG)  # the old file is not needed any more
        server = restart(prerank, server)
        assert answers(server, world) == after
    finally:
        server.stop()
