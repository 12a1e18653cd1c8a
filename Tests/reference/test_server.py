"""The running server, driven by clients no one here wrote: http.client, raw sockets, curl.

Each answer is compared with `prerank score` (same body, same config): the server must add
transport, not change answers.
"""
import gzip
import json
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import TOKEN, Server, bodies, build_world, free_port, raw, run, write_config  # noqa: F401

@pytest.fixture(scope="module")
def server(prerank, world, tmp_path_factory):
    port = free_port()
    config = tmp_path_factory.mktemp("cfg") / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    yield s
    assert s.stop() == 0



def test_answers_equal_prerank_score(prerank, world, server, tmp_path):
    for body in bodies(world):
        r, data = server.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})
        assert r.status == 200, data
        got = json.loads(data)
        path = tmp_path / "req.json"
        path.write_text(json.dumps(body))
        expected = json.loads(run(prerank, "score", "--model", world / "model", "--index", world / "index.st",
                                  "--request", path, "--config", server.config).stdout)
        for a in (got, expected):
            a.pop("took_ms")
        assert got == expected


@pytest.mark.parametrize("body,status,field", [
    (b"{not json", 400, None),
    (b'{"candidates": [1, "x"]}', 400, "candidates[1]"),
    (b'{"candidates": [1.5]}', 400, "candidates[0]"),
    (b'{"user": {"age": "old"}}', 400, "user.age"),
    (b'{"k": 0}', 400, "k"),
    (b'{"candidates": [1, 2], "relevance": [1]}', 400, "relevance"),
    (b'{"candidates": [1], "relevance": [9]}', 400, "relevance[0]"),
    (b'{"fusion": {"alpha": NaN}}', 400, None),
    (b'{"user": {"user_id": 1.5}}', 400, "user.user_id"),
    (b'', 400, None),
    # Caller mistakes are refused, not guessed at.
    (b'{"candidate": [1, 2]}', 400, "candidate"),
    (b'{"candidates": [1], "topk": 5}', 400, "topk"),
    (b'{"candidates": null}', 400, "candidates"),
])
def test_bad_bodies_get_json_errors_naming_the_field(server, body, status, field):
    r, data = server.request("POST", "/prerank", body, {"Content-Type": "application/json"})
    assert r.status == status, data
    err = json.loads(data)["error"]
    assert err["code"] and err["message"]
    if field:
        assert err["field"] == field


def test_disallowed_fusion_override_is_refused(prerank, world, tmp_path):
    port = free_port()
    config = tmp_path / "c.yaml"
    write_config(config, world, port)
    config.write_text(config.read_text().replace("allow_request_override: true", "allow_request_override: false"))
    s = Server(prerank, config, port)
    try:
        r, data = s.request("POST", "/prerank", b'{"candidates": [1], "fusion": {"beta": 3}}', {"Content-Type": "application/json"})
        assert r.status == 400, data
        err = json.loads(data)["error"]
        assert err["code"] == "fusion_override_not_allowed" and err["field"] == "fusion"
        r, data = s.request("POST", "/prerank", b'{"candidates": [1], "fusion": {}}', {"Content-Type": "application/json"})
        assert r.status == 200, data
    finally:
        assert s.stop() == 0


def test_request_id_is_echoed_as_it_came(server):
    for rid in ["r-9", 123, 0, -5, 12345678901234567890]:
        r, data = server.request("POST", "/prerank", json.dumps({"request_id": rid, "candidates": [1]}).encode(),
                                 {"Content-Type": "application/json"})
        assert r.status == 200, data
        assert json.loads(data)["request_id"] == rid and type(json.loads(data)["request_id"]) is type(rid)


def test_routes_methods_and_media_types(server):
    r, data = server.request("GET", "/nope")
    assert r.status == 404 and json.loads(data)["error"]["code"]
    r, data = server.request("GET", "/prerank")
    assert r.status == 405 and r.getheader("Allow") == "POST"
    r, data = server.request("POST", "/prerank", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415
    r, data = server.request("POST", "/prerank", b"x" * 300000, {"Content-Type": "application/json"})
    assert r.status == 413
    r, data = server.request("GET", "/healthz")
    assert r.status == 200
    r, data = server.request("GET", "/v1/model")
    info = json.loads(data)
    assert info["model"]["tasks"] == ["ctr", "atcr", "ctcvr"] and info["model"]["index"]["items"] == 3000
    assert info["fusion"]["beta"] == 20.0



def test_no_length_is_an_empty_body_and_smuggling_refused(server):
    # RFC 9112 §6.3: no Content-Length and no Transfer-Encoding is an empty body, not a 411.
    out = raw(server.port, b"POST /prerank HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 4") and not out.startswith(b"HTTP/1.1 411"), out[:80]
    assert raw(server.port, b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}").startswith(b"HTTP/1.1 400")
    assert raw(server.port, b"POST /prerank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").startswith(b"HTTP/1.1 501")


def test_keep_alive_and_pipelining_in_order(server):
    c = server.conn()
    for i in range(3):
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        assert r.status == 200 and r.getheader("Connection") is None
    sock = c.sock
    c.request("GET", "/readyz")
    c.getresponse().read()
    assert c.sock is sock, "the connection was not reused"
    c.close()
    body = b'{"request_id":"p%d","user":{},"candidates":[1],"k":1}'
    payload = b"".join(
        b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body % i) + body % i
        for i in range(3)) + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(server.port, payload)
    ids = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["request_id"]
           for part in out.split(b"HTTP/1.1 200 OK")[1:4]]
    assert ids == ["p0", "p1", "p2"]
    assert out.count(b"HTTP/1.1 200 OK") == 4


def test_body_split_across_writes_and_chunked(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    body = b'{"request_id":"split","user":{},"candidates":[1],"k":1}'
    s.sendall(b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
    time.sleep(0.2)
    s.sendall(body[10:])
    s.settimeout(5)
    assert b'"request_id":"split"' in s.recv(65536)
    s.close()
    chunked = b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    chunked += b"10\r\n" + body[:16] + b"\r\n" + b"%x\r\n" % (len(body) - 16) + body[16:] + b"\r\n0\r\n\r\n"
    out = raw(server.port, chunked)
    assert out.startswith(b"HTTP/1.1 200") and b'"request_id":"split"' in out


def test_expect_100_continue(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.settimeout(5)
    body = b'{"user":{},"candidates":[1]}'
    s.sendall(b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(body)
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()


def test_slow_loris_is_closed_after_the_header_timeout(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /prerank HTTP/1.1\r\nContent-Le")
    s.settimeout(5)
    started = time.time()
    data = s.recv(65536)
    elapsed = time.time() - started
    # Answered (408) or closed within the 0.6 s header timeout, with slack for a busy machine.
    assert elapsed < 4 and (data == b"" or data.startswith(b"HTTP/1.1 408"))
    s.close()


def test_gzip_both_ways(server, world):
    body = json.dumps(bodies(world)[0]).encode()
    c = server.conn()
    c.request("POST", "/prerank", gzip.compress(body),
              {"Content-Type": "application/json", "Content-Encoding": "gzip", "Accept-Encoding": "gzip"})
    r = c.getresponse()
    data = r.read()
    assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(data))["request_id"] == "a"
    bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
    c.request("POST", "/prerank", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    r = c.getresponse()
    r.read()
    assert r.status == 413
    c.close()


def test_metrics_expose_the_documented_names(server):
    r, data = server.request("GET", "/metrics")
    text = data.decode()
    for name in ["prerank_requests_total", "prerank_request_duration_seconds_bucket", "prerank_stage_duration_seconds_bucket",
                 "prerank_candidates_per_request_bucket", "prerank_partial_responses_total", "prerank_shed_total",
                 "prerank_reloads_total", "prerank_model_info", "prerank_http_connections_open"]:
        assert name in text, name
    assert 'stage="user_tower"' in text and 'route="/prerank",code="200"' in text


def test_reload_good_bad_and_unauthorised(prerank, world, tmp_path):
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    try:
        r, _ = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer wrong-token-xx"})
        assert r.status == 401
        r, _ = s.request("POST", "/admin/reload", b"")
        assert r.status == 401
        # Good: new fusion weights apply.
        config.write_text(config.read_text().replace("beta: 20.0", "beta: 7.5"))
        r, data = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
        assert r.status == 200, data
        assert json.loads(s.request("GET", "/v1/model")[1])["fusion"]["beta"] == 7.5
        # Bad config: refused with the key named, old config keeps serving.
        good = config.read_text()
        config.write_text(good + "bogus_key: 1\n")
        r, data = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
        assert r.status == 422 and "bogus_key" in data.decode()
        # Bad model: an index for another model is refused.
        other = tmp_path / "other"
        run(prerank, "init-model", "--features", world / "data" / "features.yaml", "--out", other, "--hidden", "16,8", "--d", 8, "--seed", 3)
        config.write_text(good.replace(str(world / "model"), str(other)))
        r, data = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
        assert r.status == 422 and "fingerprint" in data.decode()
        r, data = s.request("POST", "/prerank", json.dumps({"user": {}, "candidates": [1]}), {"Content-Type": "application/json"})
        assert r.status == 200 and json.loads(s.request("GET", "/v1/model")[1])["fusion"]["beta"] == 7.5
        # SIGHUP applies a good config.
        config.write_text(good.replace("beta: 7.5", "beta: 3.0"))
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and json.loads(s.request("GET", "/v1/model")[1])["fusion"]["beta"] != 3.0:
            time.sleep(0.1)
        assert json.loads(s.request("GET", "/v1/model")[1])["fusion"]["beta"] == 3.0
        metrics = s.request("GET", "/metrics")[1].decode()
        assert 'prerank_reloads_total{result="ok"} 2' in metrics
        assert 'prerank_reloads_total{result="rejected"} 2' in metrics
        assert 'prerank_reloads_total{result="unauthorized"} 2' in metrics
    finally:
        assert s.stop() == 0


def test_sigterm_drains_and_exits_zero(prerank, world, tmp_path):
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    c = s.conn()
    c.request("GET", "/healthz")
    c.getresponse().read()
    assert s.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_tls_with_a_self_signed_certificate(prerank, world, tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port, extra=f"")
    text = config.read_text().replace("  admin_token_file:", f"  tls:\n    cert: {cert}\n    key: {key}\n  admin_token_file:")
    config.write_text(text)
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen([prerank, "serve", "--config", config], stdout=log, stderr=log)
    try:
        out = None
        for _ in range(100):
            p = subprocess.run(["curl", "-sk", "--max-time", "5", f"https://127.0.0.1:{port}/prerank", "-H", "Content-Type: application/json",
                                "-d", '{"request_id":"tls","user":{},"candidates":[1],"k":1}'], capture_output=True, text=True)
            if p.returncode == 0 and p.stdout:
                out = p.stdout
                break
            time.sleep(0.1)
        assert out is not None and json.loads(out)["request_id"] == "tls"
        plain = subprocess.run(["curl", "-s", "--max-time", "3", f"http://127.0.0.1:{port}/healthz"], capture_output=True)
        assert plain.stdout == b""  # plain HTTP to a TLS port gets no HTTP answer
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


@pytest.fixture(scope="module")
def big_world(prerank, tmp_path_factory):
    """A 200k-item index: a whole-index request takes several milliseconds to score."""
    return build_world(prerank, tmp_path_factory.mktemp("bigworld"), users=50, items=200000, requests=20, candidates=5,
                       seed=3, hidden="16", d=64)


def test_budget_partial_answers_and_504(prerank, big_world, tmp_path):
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, big_world, port, extra="budget_ms: 2\nserver:\n  workers: 1\n")
    text = config.read_text()
    # one server section: merge the extra keys into it
    text = text.replace("server:\n  workers: 1\n", "").replace("server:\n", "server:\n  workers: 1\n", 1)
    config.write_text(text)
    s = Server(prerank, config, port)
    try:
        partial = 0
        for _ in range(5):
            r, data = s.request("POST", "/prerank", json.dumps({"user": {"user_id": "u1"}, "k": 10}), {"Content-Type": "application/json"})
            if r.status == 200:
                answer = json.loads(data)
                if answer["partial"]:
                    partial += 1
                    assert 0 < len(answer["items"]) <= 10
                    scores = [i["score"] for i in answer["items"]]
                    assert scores == sorted(scores, reverse=True)
            else:
                assert r.status == 504 and json.loads(data)["error"]["code"] == "budget_expired"
        assert partial > 0, "a 2 ms budget never cut a 200k-item scan short"
        metrics = s.request("GET", "/metrics")[1].decode()
        assert "prerank_partial_responses_total 0" not in metrics
    finally:
        assert s.stop() == 0


def test_overload_is_shed_with_503_and_retry_after(prerank, big_world, tmp_path):
    import concurrent.futures
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, big_world, port)
    config.write_text(config.read_text().replace("server:\n", "server:\n  workers: 1\n  queue_depth: 0\n", 1))
    s = Server(prerank, config, port)
    try:
        def one(_):
            r, data = s.request("POST", "/prerank", json.dumps({"user": {"user_id": "u1"}, "k": 10}), {"Content-Type": "application/json"})
            return r.status, r.getheader("Retry-After")
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            results = list(ex.map(one, range(48)))
        statuses = [st for st, _ in results]
        assert 200 in statuses and 503 in statuses, statuses
        assert all(ra == "1" for st, ra in results if st == 503)
        metrics = s.request("GET", "/metrics")[1].decode()
        assert "prerank_shed_total 0" not in metrics
    finally:
        assert s.stop() == 0


def test_canary_arm_and_request_log_survive_reload_and_sigterm(prerank, world, tmp_path):
    import glob
    other = tmp_path / "canary"
    run(prerank, "init-model", "--features", world / "data" / "features.yaml", "--out", other, "--hidden", "16,8", "--d", 8,
        "--seed", 11)
    run(prerank, "build-index", "--model", other, "--items", world / "data" / "items.csv", "--out", tmp_path / "canary.st")
    logs = tmp_path / "logs"
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port, extra=f"""request_log:
  dir: {logs}
  sample_rate: 1.0
  max_file_bytes: 4096
  max_files: 1000
canary:
  model:
    dir: {other}
    index: {tmp_path / 'canary.st'}
  share: 0.5
  key: request_id
""")
    s = Server(prerank, config, port)
    arms = {}
    sent = 0
    try:
        for i in range(60):
            body = {"request_id": f"req-{i}", "user": {"user_id": f"u{i}"}, "candidates": [1, 2, 3], "k": 2}
            r, data = s.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})
            assert r.status == 200
            answer = json.loads(data)
            arms[answer["request_id"]] = answer["arm"]
            sent += 1
            if i == 30:
                r, _ = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
                assert r.status == 200
        # Stable: the same request id goes to the same arm.
        r, data = s.request("POST", "/prerank", json.dumps({"request_id": "req-7", "user": {}, "candidates": [1]}),
                            {"Content-Type": "application/json"})
        assert json.loads(data)["arm"] == arms["req-7"]
        sent += 1
        assert set(arms.values()) == {"primary", "canary"}
        metrics = s.request("GET", "/metrics")[1].decode()
        assert 'arm="canary"' in metrics and 'arm="primary"' in metrics
        info = json.loads(s.request("GET", "/v1/model")[1])
        assert info["canary"]["share"] == 0.5
    finally:
        assert s.stop() == 0
    lines = []
    for path in sorted(glob.glob(str(logs / "*"))):
        data = open(path, "rb").read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        lines += [json.loads(l) for l in data.decode().splitlines() if l.strip()]
    assert len(lines) == sent, "every sampled request is logged exactly once across rotation, reload and SIGTERM"
    assert {l["request_id"] for l in lines} == {f"req-{i}" for i in range(60)}
    assert any(p.endswith(".gz") for p in glob.glob(str(logs / "*"))), "finished files are gzip-compressed"


def test_loadtest_against_the_server(prerank, server, world, tmp_path):
    """`prerank loadtest` end to end: open-loop rate achieved, HdrHistogram percentiles, no errors,
    remote hosts refused."""
    out = run(prerank, "loadtest", "--url", f"http://127.0.0.1:{server.port}/prerank", "--model", world / "model",
              "--index", world / "index.st", "--candidates", 200, "--bodies", 20, "--rate", 50, "--duration", 2,
              "--warmup", 0.2, "--json").stdout
    step = json.loads(out)["steps"][0]
    assert step["scheduled"] == 100 and step["completed"] == 100 and step["errors"] == {}
    assert abs(step["achievedRate"] - 50) <= 5
    assert 0 < step["p50Ms"] <= step["p99Ms"] <= step["p999Ms"] <= step["maxMs"]
    assert step["refused"] == 0 and step.get("refusedP50Ms") is None
    p = run(prerank, "loadtest", "--url", "http://10.1.2.3:8080/prerank", "--requests", tmp_path / "none.jsonl",
            "--duration", 1, check=False)
    assert p.returncode != 0 and "allow-remote" in p.stderr
    # Refused requests (here 400s) are counted and timed apart from the answers.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"candidates": [1, 2, 3], "k": 2}\n{"candidate": [1]}\n')
    step = json.loads(run(prerank, "loadtest", "--url", f"http://127.0.0.1:{server.port}/prerank", "--requests", mixed,
                          "--rate", 40, "--duration", 1, "--warmup", 0, "--max-error-rate", 1, "--json").stdout)["steps"][0]
    assert step["ok"] == 20 and step["refused"] == 20 and step["errors"] == {"400": 20}
    # The same run at the default --max-error-rate (1 %) prints its report and exits 1.
    p = run(prerank, "loadtest", "--url", f"http://127.0.0.1:{server.port}/prerank", "--requests", mixed,
            "--rate", 40, "--duration", 1, "--warmup", 0, "--json", check=False)
    assert p.returncode == 1 and json.loads(p.stdout)["steps"][0]["errors"] == {"400": 20}
    assert p.stderr.strip().splitlines()[-1].startswith("Error: error rate 50.00 % at 40 req/s"), p.stderr
    # A sweep runs every rate --repeats times; the knee comes with its spread.
    good = tmp_path / "good.jsonl"
    good.write_text('{"candidates": [1, 2, 3], "k": 2}\n')
    sweep = json.loads(run(prerank, "loadtest", "--url", f"http://127.0.0.1:{server.port}/prerank", "--requests", good,
                           "--sweep", "--rate", 10, "--step-factor", 2, "--max-rate", 20, "--repeats", 2, "--duration", 1,
                           "--connections", 1,  # this server closes a connection idle 600 ms before its first request
                           "--warmup", 0, "--p99-target", 5000, "--confirm-fraction", 0, "--json").stdout)
    assert [s["offeredRate"] for s in sweep["steps"]] == [10, 10, 20, 20], sweep["steps"]
    assert sweep["kneeRate"] == 20 and sweep["repeats"] == 2 and sweep.get("kneeUpperRate") is None
    assert 0 < sweep["kneeP99MinMs"] <= sweep["kneeP99MaxMs"]
    # Nothing listening: no answer at all is a failure, not a report of zeros.
    p = run(prerank, "loadtest", "--url", f"http://127.0.0.1:{free_port()}/prerank", "--requests", mixed,
            "--rate", 20, "--duration", 0.5, "--warmup", 0, "--timeout-ms", 500, check=False)
    assert p.returncode == 1 and "Error: no request got an answer" in p.stderr, p.stderr
    assert 0 < step["refusedP50Ms"] <= step["refusedP99Ms"] and 0 < step["p50Ms"] <= step["p99Ms"]


def test_half_closed_client_gets_every_pipelined_answer(server):
    body = b'{"request_id":"h%d","user":{},"candidates":[1],"k":1}'
    payload = b"".join(
        b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body % i) + body % i
        for i in range(3))
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)  # no more requests; the answers must still all come back
    s.settimeout(5)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert [b'"request_id":"h%d"' % i in out for i in range(3)] == [True] * 3


def test_validate_config_opens_what_the_server_would(prerank, world, tmp_path):
    good = tmp_path / "good.yaml"
    write_config(good, world, 8080)
    p = run(prerank, "validate-config", good)
    assert p.stdout.startswith(f"ok: {good}")
    missing = tmp_path / "missing.yaml"
    missing.write_text(good.read_text().replace(str(world / "model"), str(tmp_path / "nowhere")))
    p = run(prerank, "validate-config", missing, check=False)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "model" in p.stderr, p.stderr
    assert run(prerank, "validate-config", "--syntax-only", missing).stdout.startswith(f"ok: {missing} (syntax only")
    csv_index = tmp_path / "csv.yaml"
    csv_index.write_text(good.read_text().replace(str(world / "index.st"), str(world / "data" / "items.csv")))
    p = run(prerank, "validate-config", csv_index, check=False)
    assert p.returncode == 1 and "not a safetensors file" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_logging_applies_on_reload_and_access_lines_are_sampled(prerank, world, tmp_path):
    """logging.* applies on reload; per-request access lines follow logging.access_sample_rate
    (default 0: none); the restart warning names exactly the keys a reload cannot apply."""
    port = free_port()
    config = tmp_path / "c.yaml"
    write_config(config, world, port)  # level info, json
    s = Server(prerank, config, port)
    body = json.dumps({"candidates": [int(x) for x in range(100001, 100040)], "k": 3}).encode()

    def lines():
        s.log.flush()
        out = []
        for l in open(str(config) + ".log").read().splitlines():
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
        return out

    def reloads_ok():
        text = s.request("GET", "/metrics")[1].decode()
        m = re.search(r'^prerank_reloads_total\{result="ok"\} (\d+)', text, flags=re.M)
        return int(m.group(1)) if m else 0

    def reload_with(text):
        n = reloads_ok()
        config.write_text(text)
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            time.sleep(0.1)
            if reloads_ok() > n:
                return
        raise AssertionError("no reload ok")

    try:
        base = config.read_text()
        for _ in range(5):
            assert s.request("POST", "/prerank", body, {"Content-Type": "application/json"})[0].status == 200
        time.sleep(0.3)
        assert not [l for l in lines() if l.get("msg") == "prerank" and l.get("status") == 200]
        reload_with(base.replace("gamma: 0.1", "gamma: 0.2") + "  access_sample_rate: 1.0\n")
        for _ in range(4):
            assert s.request("POST", "/prerank", body, {"Content-Type": "application/json"})[0].status == 200
        time.sleep(0.5)
        access = [l for l in lines() if l.get("msg") == "prerank" and l.get("status") == 200]
        assert len(access) == 4
        # JSON log lines type their values: numbers and booleans are not strings.
        assert all(isinstance(l["took_ms"], float) and l["candidates"] == 39 and l["partial"] is False for l in access), access
        assert not [l for l in lines() if "restart" in l.get("msg", "")], "no key needing a restart changed"
        # Level warning: info lines stop; the restart warning names server.workers only.
        reload_with(base.replace("level: info", "level: warning").replace("  port:", "  workers: 1\n  port:") +
                    "  access_sample_rate: 1.0\n")
        before = len([l for l in lines() if l.get("msg") == "prerank"])
        for _ in range(3):
            assert s.request("POST", "/prerank", body, {"Content-Type": "application/json"})[0].status == 200
        time.sleep(0.5)
        assert len([l for l in lines() if l.get("msg") == "prerank"]) == before
        warnings = [l for l in lines() if "restart" in l.get("msg", "")]
        assert len(warnings) == 1 and warnings[0]["keys"] == "server.workers", warnings
    finally:
        assert s.stop() == 0


def test_fusion_ab_on_the_canary_arm(prerank, world, tmp_path):
    """A canary with only its own fusion weights serves the primary model with them; /v1/model and
    prerank_fusion_weight{arm,term} show both arms' weights."""
    port = free_port()
    config = tmp_path / "c.yaml"
    write_config(config, world, port, extra="canary:\n  share: 1.0\n  fusion: {beta: 2.5, gamma: 0}\n")
    s = Server(prerank, config, port)
    try:
        body = json.dumps({"request_id": "ab-1", "candidates": list(range(100001, 100200)), "k": 5, "debug": True}).encode()
        r, data = s.request("POST", "/prerank", body, {"Content-Type": "application/json"})
        assert r.status == 200, data
        answer = json.loads(data)
        assert answer["arm"] == "canary"
        for item in answer["items"]:
            assert item["score"] == pytest.approx(1.0 * item["ctr"] + 2.5 * item["ctcvr"], rel=1e-6)
        model = json.loads(s.request("GET", "/v1/model")[1])
        assert model["canary"]["fusion"] == {"formula": "additive", "alpha": 1.0, "beta": 2.5, "gamma": 0.0}
        assert model["canary"]["model"]["fingerprint"] == model["model"]["fingerprint"]
        metrics = s.request("GET", "/metrics")[1].decode()
        assert 'prerank_fusion_weight{arm="canary",formula="additive",term="beta"} 2.5' in metrics
        assert 'prerank_fusion_weight{arm="primary",formula="additive",term="beta"} 20.0' in metrics
    finally:
        assert s.stop() == 0
