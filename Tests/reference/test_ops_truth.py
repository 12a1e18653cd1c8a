"""Operational truth (issue #12): /metrics by the Prometheus conventions, checked by promtool on a
live server after traffic; process and build-info metrics; which kernel path answers. Issue #27:
the canary's routed share, reloads that list restart-only keys, no default model, visible
ignored and missing features."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import TOKEN, bodies, free_port, run, Server, write_config


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; scripts/setup-test.sh installs it)")
    return path


def samples(text):
    """{name{labels}: value} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def types(text):
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


@pytest.fixture(scope="module")
def live(prerank, world, tmp_path_factory):  # noqa: F811
    port = free_port()
    config = tmp_path_factory.mktemp("ops") / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    s.bodies = bodies(world)
    # Traffic: answers, refusals, a parser error, so every family has samples.
    for body in bodies(world):
        r, _ = s.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})
        assert r.status == 200
    s.request("POST", "/prerank", b"{not json", {"Content-Type": "application/json"})
    s.request("GET", "/nope")
    yield s
    assert s.stop() == 0


def test_promtool_accepts_metrics_after_traffic(live):
    tool = promtool()
    _, data = live.request("GET", "/metrics")
    p = subprocess.run([tool, "check", "metrics"], input=data, capture_output=True, timeout=60)
    # promtool exits 0 when the text parses and no lint rule is broken; it prints the problems.
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (p.stdout + p.stderr).decode()


def test_arm_label_is_primary_for_scored_requests_without_a_canary(live):
    """No canary configured: every scored /prerank request counts under arm="primary"; only the
    requests no arm served (the bad body, the unknown route, /metrics itself) carry arm=""
    (docs/ARCHITECTURE.md "arm=\"\" on requests that no arm served")."""
    _, data = live.request("GET", "/metrics")
    s = samples(data.decode())
    series = {k: v for k, v in s.items() if k.startswith("prerank_requests_total{")}
    ok = [k for k in series if 'route="/prerank"' in k and 'code="200"' in k]
    assert ok and all('arm="primary"' in k for k in ok), ok
    assert sum(series[k] for k in ok) >= len(live.bodies)  # other tests of this module may add answers
    empty = [k for k in series if 'arm=""' in k]
    assert empty and all('code="200"' not in k or 'route="/prerank"' not in k for k in empty), empty
    assert not [k for k in series if 'arm="canary"' in k]


def test_every_total_is_a_counter_and_every_counter_a_total(live):
    _, data = live.request("GET", "/metrics")
    text = data.decode()
    for name, kind in types(text).items():
        if name.endswith("_total"):
            assert kind == "counter", name
        if kind == "counter":
            assert name.endswith("_total"), name
    t = types(text)
    for name in ["prerank_http_connections_accepted_total", "prerank_http_connections_rejected_total",
                 "prerank_http_protocol_errors_total", "prerank_http_timeouts_total"]:
        assert t.get(name) == "counter", name
    # The old gauges are gone (the names dashboards and alerts must not use).
    for old in ["prerank_http_connections_accepted", "prerank_http_connections_rejected",
                "prerank_http_protocol_errors", "prerank_http_timeouts"]:
        assert old not in t, old
    s = samples(text)
    assert s["prerank_http_connections_accepted_total"] >= 6
    assert s["prerank_http_protocol_errors_total"] >= 0
    assert t["prerank_http_connections_open"] == "gauge"


def test_process_metrics_are_this_process(live):
    _, data = live.request("GET", "/metrics")
    text = data.decode()
    s = samples(text)
    t = types(text)
    assert t["process_cpu_seconds_total"] == "counter"
    for g in ["process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
              "process_start_time_seconds"]:
        assert t[g] == "gauge", g
    pid = live.proc.pid
    rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", open(f"/proc/{pid}/status").read()).group(1))
    assert abs(s["process_resident_memory_bytes"] - rss_kb * 1024) < 64 << 20
    assert s["process_virtual_memory_bytes"] >= s["process_resident_memory_bytes"]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    assert abs(s["process_open_fds"] - fds) <= 4
    soft = int(re.search(r"Max open files\s+(\d+)", open(f"/proc/{pid}/limits").read()).group(1))
    assert s["process_max_fds"] == soft
    started = os.stat(f"/proc/{pid}").st_mtime
    assert abs(s["process_start_time_seconds"] - started) < 60
    assert 0 < s["process_cpu_seconds_total"] < 3600


def test_build_info_and_model_name_the_kernel(live):
    _, data = live.request("GET", "/metrics")
    text = data.decode()
    m = re.search(r'^prerank_build_info\{version="([^"]+)",commit="([^"]+)",swift="([^"]+)",kernel="([^"]+)"\} 1$', text, re.M)
    assert m, "prerank_build_info missing"
    assert types(text)["prerank_build_info"] == "gauge"
    kernel = m.group(4)
    expected = "scalar" if os.environ.get("PRERANK_KERNEL") == "scalar" else None
    assert kernel in ("avx2", "scalar") and (expected is None or kernel == expected)
    _, info = live.request("GET", "/v1/model")
    assert json.loads(info)["kernel"] == kernel


def test_kernel_env_forces_the_portable_path_with_equal_answers(prerank, world, live, tmp_path, monkeypatch):  # noqa: F811
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    monkeypatch.setenv("PRERANK_KERNEL", "scalar")
    s = Server(prerank, config, port)
    try:
        assert json.loads(s.request("GET", "/v1/model")[1])["kernel"] == "scalar"
        for body in bodies(world):
            a = json.loads(s.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})[1])
            b = json.loads(live.request("POST", "/prerank", json.dumps(body), {"Content-Type": "application/json"})[1])
            assert [i["id"] for i in a["items"]] == [i["id"] for i in b["items"]]
            for x, y in zip(a["items"], b["items"]):
                assert x["score"] == pytest.approx(y["score"], rel=1e-4, abs=1e-6)
    finally:
        assert s.stop() == 0


def test_unknown_kernel_name_is_a_one_line_error(prerank, world, tmp_path):  # noqa: F811
    config = tmp_path / "prerank.yaml"
    write_config(config, world, free_port())
    p = subprocess.run([prerank, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PRERANK_KERNEL": "sse9"})
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "PRERANK_KERNEL" in lines[0], p.stderr


def test_setup_fails_loudly_when_pip_fails(tmp_path):
    """scripts/setup-test.sh with every apt package present and a project environment whose pip
    fails: exit ≠ 0 and pip's message, not a silent success (and no stamp, so the next run retries)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    venv = tmp_path / "venv"
    (bin_dir / "dpkg").write_text("#!/bin/sh\nexit 0\n")
    # python3 -m venv [--clear] DIR makes a DIR/bin/python whose pip fails; anything else is the real one.
    (bin_dir / "python3").write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    for d; do :; done
    mkdir -p "$d/bin"
    printf '#!/bin/sh\\necho "ERROR: No matching distribution found for numpy" >&2\\nexit 1\\n' > "$d/bin/python"
    chmod +x "$d/bin/python"
    exit 0
fi
exec {sys.executable} "$@"
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    p = subprocess.run(["bash", os.path.join(root, "scripts", "setup-test.sh")], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PRERANK_VENV": str(venv)})
    assert p.returncode != 0
    assert "pip install of the Python test tools from requirements/test.lock failed" in p.stderr, p.stderr
    assert "No matching distribution" in p.stderr
    assert not (venv / ".prerank-lock").exists()


def one_line_refusal(p, *needles):
    assert p.returncode != 0, p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Stack dump" not in p.stderr and "Fatal error" not in p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_operator_input_refusals_are_one_line(prerank, world, tmp_path):  # noqa: F811
    feats = world / "data" / "features.yaml"
    # A negative number is a value, checked by range (not "missing value" plus a usage block).
    one_line_refusal(run(prerank, "train", "--features", feats, "--data", world / "data", "--out", tmp_path / "m",
                         "--epochs", "-3", check=False), "--epochs", "-3")
    one_line_refusal(run(prerank, "train", "--features", feats, "--data", world / "data", "--out", tmp_path / "m",
                         "--epochs", "abc", check=False), "--epochs")
    one_line_refusal(run(prerank, "serve", "--port", "70000", check=False), "70000")
    # features.yaml with a mapping as a key: Yams.load would trap; the node walk names it.
    bad = tmp_path / "features.yaml"
    bad.write_text("? {a: 1}\n: x\n" + feats.read_text())
    one_line_refusal(run(prerank, "init-model", "--features", bad, "--out", tmp_path / "m2", check=False),
                     str(bad), "not a scalar")


def test_join_logs_stops_at_a_bad_label(prerank, world, tmp_path):  # noqa: F811
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "requests-20261123T020304Z-000001.jsonl").write_text(json.dumps({
        "time": "2026-11-23T02:03:04.123Z", "request_id": "r-1", "model_version": "v1", "arm": "primary",
        "fusion": {"formula": "additive", "alpha": 1, "beta": 20, "gamma": 0}, "user": {"user_id": "u42"}, "query": {},
        "candidates": [10], "items": [{"id": 10, "score": 0.5, "probabilities": {"ctr": 0.1, "atcr": 0.05, "ctcvr": 0.01}}],
        "partial": False}) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,item_id,click,cart,order\nr-1,10,1,0,0\nr-1,11,0,O,0\n")
    p = run(prerank, "join-logs", "--logs", logs, "--labels", labels, "--features", world / "data" / "features.yaml",
            "--out", tmp_path / "out.csv", check=False)
    one_line_refusal(p, f"{labels} line 3", "cart", '"O"')
    assert not (tmp_path / "out.csv").exists()


def test_train_without_validation_rows_writes_null_not_numbers(prerank, world, tmp_path):  # noqa: F811
    """No validation split: AUC and log-loss are undefined → null in model.json and a warning,
    not 0 (which reads as a measurement)."""
    p = run(prerank, "train", "--features", world / "data" / "features.yaml", "--data", world / "data" / "train.csv",
            "--out", tmp_path / "m", "--epochs", 1, "--hidden", "8", "--d", 8, "--batch", 128, "--validation-fraction", 0)
    assert "warning: no validation rows" in p.stderr
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    for task, figures in spec["training"]["validation"].items():
        assert figures == {"auc": None, "logloss": None}, task


def test_eval_says_why_a_figure_is_null(prerank, world, tmp_path):  # noqa: F811
    """A task without positive rows has no AUC: null in the report and a warning naming it."""
    import csv
    src = world / "data" / "test.csv"
    rows = list(csv.reader(src.open()))
    header, body = rows[0], rows[1:]
    col = header.index("order")
    for r in body:
        r[col] = "0"
    data = tmp_path / "no-orders.csv"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows([header] + body)
    run(prerank, "build-index", "--model", world / "model", "--items", world / "data" / "items.csv", "--out", tmp_path / "i.st")
    p = run(prerank, "eval", "--model", world / "model", "--index", tmp_path / "i.st", "--data", data, "--json", "--k", 5)
    report = json.loads(p.stdout)
    assert report["tasks"]["ctcvr"]["auc"] is None
    assert "warning: task ctcvr has 0 positive rows" in p.stderr


# ---------------------------------------------------------------------------------------------
# Issue #27: a canary that splits as configured, reloads that say what they skipped, no silent
# defaults, visible ignored features.

AUTH = {"Authorization": "Bearer " + TOKEN}
JSON = {"Content-Type": "application/json"}


def metric(s, name):
    _, data = s.request("GET", "/metrics")
    return samples(data.decode()).get(name, 0.0)


def test_canary_gets_its_share_of_sequential_user_ids(prerank, world, tmp_path):  # noqa: F811
    """The walkthrough's case: users u1…u1000 against a 10 % canary got 0 % before the finaliser."""
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port, extra="canary:\n  fusion: {beta: 25.0}\n  share: 0.1\n  key: user_id\n")
    s = Server(prerank, config, port)
    try:
        n = 400
        arms = []
        for i in range(1, n + 1):
            r, data = s.request("POST", "/prerank", json.dumps({"user": {"user_id": f"u{i}"}, "candidates": [1], "k": 1}), JSON)
            assert r.status == 200, data
            arms.append(json.loads(data)["arm"])
        share = arms.count("canary") / n
        tolerance = 4 * (0.1 * 0.9 / n) ** 0.5 + 1 / n
        assert abs(share - 0.1) <= tolerance, share
        # The same user always gets the same arm.
        again = json.loads(s.request("POST", "/prerank", json.dumps({"user": {"user_id": "u7"}, "candidates": [1]}), JSON)[1])["arm"]
        assert again == arms[6]
        assert metric(s, "prerank_canary_share") == 0.1
        routed = metric(s, 'prerank_requests_total{route="/prerank",code="200",arm="canary"}')
        assert routed == arms.count("canary") + (again == "canary")
    finally:
        assert s.stop() == 0


def test_empty_config_is_refused_everywhere_and_a_reload_keeps_the_model(prerank, world, tmp_path):  # noqa: F811
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    p = run(prerank, "validate-config", empty, check=False)
    assert p.returncode == 1 and "is empty" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = run(prerank, "serve", "--config", empty, check=False)
    assert p.returncode != 0 and "is empty" in p.stderr, p.stderr
    nomodel = tmp_path / "nomodel.yaml"
    nomodel.write_text("fusion: {beta: 3}\n")
    p = run(prerank, "validate-config", nomodel, "--syntax-only", check=False)
    assert p.returncode == 1 and "model.dir is required" in p.stderr, p.stderr

    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    try:
        before = json.loads(s.request("GET", "/v1/model")[1])["model"]
        config.write_text("")
        r, data = s.request("POST", "/admin/reload", b"", AUTH)
        err = json.loads(data)["error"]
        assert r.status == 422 and err["field"] == str(config) and "is empty" in err["message"], data
        config.write_text("model:\n  index: x.st\n")
        r, data = s.request("POST", "/admin/reload", b"", AUTH)
        assert r.status == 422 and json.loads(data)["error"]["field"] == "model.dir", data
        r, data = s.request("POST", "/prerank", json.dumps({"user": {}, "candidates": [1]}), JSON)
        assert r.status == 200
        assert json.loads(s.request("GET", "/v1/model")[1])["model"] == before
    finally:
        assert s.stop() == 0


def test_reload_says_which_keys_need_a_restart(prerank, world, tmp_path):  # noqa: F811
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    try:
        good = config.read_text()
        config.write_text(good.replace(f"  port: {port}\n", f"  port: {free_port()}\n  workers: 3\n").replace("beta: 20.0", "beta: 7.5"))
        r, data = s.request("POST", "/admin/reload", b"", AUTH)
        assert r.status == 200, data
        answer = json.loads(data)
        assert answer["restart_required"] == ["server.port", "server.workers"], answer
        assert answer["applied"] == ["fusion.beta"], answer
        assert answer["models_read"] == 0 and answer["indexes_mapped"] == 0
        # Still on the old port, and the metric and the log say why.
        assert json.loads(s.request("GET", "/v1/model")[1])["fusion"]["beta"] == 7.5
        assert metric(s, 'prerank_config_restart_pending{key="server.port"}') == 1
        assert metric(s, 'prerank_config_restart_pending{key="server.host"}') == 0
        log = open(str(config) + ".log").read()
        assert "apply only at the next restart" in log and "server.port,server.workers" in log
        # Back to the running values: nothing pending.
        config.write_text(good)
        answer = json.loads(s.request("POST", "/admin/reload", b"", AUTH)[1])
        assert answer["restart_required"] == [] and answer["applied"] == ["fusion.beta"], answer
        assert metric(s, 'prerank_config_restart_pending{key="server.port"}') == 0
    finally:
        assert s.stop() == 0


def test_admin_token_rotates_with_sighup_alone(prerank, world, tmp_path):  # noqa: F811
    import shutil as sh
    import signal
    import time
    w = tmp_path / "w"
    w.mkdir()
    for name in ["model", "index.st"]:
        os.symlink(world / name, w / name)
    (w / "token").write_text("old-token-123\n")
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, w, port)
    s = Server(prerank, config, port)
    try:
        assert s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer old-token-123"})[0].status == 200
        (w / "token.new").write_text("new-token-456\n")
        sh.move(w / "token.new", w / "token")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer new-token-456"})[0].status != 200:
            time.sleep(0.1)
        assert s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer new-token-456"})[0].status == 200
        assert s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer old-token-123"})[0].status == 401
    finally:
        assert s.stop() == 0


def test_misspelt_feature_shows_in_debug_metric_and_log_once(prerank, world, tmp_path):  # noqa: F811
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    try:
        body = {"user": {"user_id": "u1", "segmnt": "gold"}, "query": {"query_terms": "red shoes"}, "candidates": [1], "debug": True}
        for _ in range(3):
            r, data = s.request("POST", "/prerank", json.dumps(body), JSON)
            assert r.status == 200, data
        f = json.loads(data)["features"]
        assert f["ignored"] == ["user.segmnt"] and "segment" in f["missing"] and f["coerced"] == ["query.query_terms"], f
        assert "features" not in json.loads(s.request("POST", "/prerank", json.dumps({**body, "debug": False}), JSON)[1])
        assert metric(s, 'prerank_request_features_total{feature="other",outcome="ignored"}') == 4
        assert metric(s, 'prerank_request_features_total{feature="segment",outcome="missing"}') >= 4
        assert metric(s, 'prerank_request_features_total{feature="query_terms",outcome="coerced"}') == 4
        log = open(str(config) + ".log").read()
        assert log.count("user.segmnt") == 1, log
    finally:
        assert s.stop() == 0
    # reject: a 400 naming the field; a clean request still scores.
    write_config(config, world, port, extra="request:\n  unknown_features: reject\n")
    s = Server(prerank, config, port)
    try:
        r, data = s.request("POST", "/prerank", json.dumps(body), JSON)
        err = json.loads(data)["error"]
        assert r.status == 400 and err["code"] == "unknown_feature" and err["field"] == "user.segmnt", data
        r, _ = s.request("POST", "/prerank", json.dumps({"user": {"user_id": "u1"}, "candidates": [1]}), JSON)
        assert r.status == 200
    finally:
        assert s.stop() == 0


def test_score_refusal_prints_one_error_line(prerank, world, tmp_path):  # noqa: F811
    """`prerank score` on a bad request: the JSON error on stdout, one `Error:` line, exit 2 — no
    stray `Error: ExitCode(rawValue: 2)` after it (issue #27)."""
    req = tmp_path / "bad.json"
    req.write_text('{"candidates": [1], "k": 0}')
    p = run(prerank, "score", "--model", world / "model", "--index", world / "index.st", "--request", req, check=False)
    assert p.returncode == 2
    assert json.loads(p.stdout)["error"]["field"] == "k"
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: HTTP 400") and "ExitCode" not in p.stderr, p.stderr
