"""Docs that are executed: the README's quick start and every command block of docs/OPERATIONS.md
run here as pasted. Only ports, paths to the test world, tokens and placeholders are substituted,
each block with its own explicit table (`pasted` fails when an entry no longer matches); blocks
that are not commands (config excerpts, a Docker build, a measurement recipe) are listed in
OPS_NOT_RUN with the reason, and a new block in neither list fails."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import textwrap
import time
import urllib.request

import pytest

from conftest import ROOT, TOKEN, free_port, run, Server, write_config


def fenced_blocks(text):
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_ready(port, proc, seconds=600):
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, "the server exited before it was ready"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("not ready in time")


def test_readme_quick_start_serves_and_its_curl_works(tmp_path):
    """The quick start as pasted. Serving needs no Python: python3, python and pip on the serve
    command's PATH only record that they were called, and the test fails if any was."""
    spy = tmp_path / "spy"
    spy.mkdir()
    calls = tmp_path / "python-calls"
    for name in ("python3", "python", "pip", "pip3"):
        (spy / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> {calls}\nexit 1\n")
        (spy / name).chmod(0o755)
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert readme.split("\n", 3)[2].startswith("An online") and "## Quick start\n```\n" in readme
    quick = readme.split("## Quick start\n", 1)[1]
    blocks = fenced_blocks(quick)
    commands = [l for l in blocks[0].splitlines() if l.strip()]
    assert commands == ["scripts/serve.sh", "scripts/test.sh"], commands
    curl = blocks[1].strip()
    assert curl.startswith("curl ") and "127.0.0.1:8080" in curl
    # The first command as pasted; on a machine where :8080 is taken, the same with --port.
    port = 8080 if port_is_free(8080) else free_port()
    args = shlex.split(commands[0]) + ([] if port == 8080 else ["--port", str(port)])
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,
                            env={**os.environ, "CI": os.environ.get("CI", ""), "PATH": f"{spy}:{os.environ['PATH']}"})
    try:
        wait_ready(port, proc)
        out = subprocess.run(["bash", "-c", curl.replace("127.0.0.1:8080", f"127.0.0.1:{port}")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        answer = json.loads(out.stdout)
        # What the README says the answer holds.
        assert len(answer["items"]) == 3 and answer["unknown_ids"] == [99], answer
        for item in answer["items"]:
            assert {"id", "score", "ctr", "ctcvr", "tasks"} <= set(item)
        assert not calls.exists(), "the serve command ran Python: " + calls.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# Every fenced block of docs/OPERATIONS.md, by its first line: run here (by the named test, with
# its substitution table) or not run, with the reason. A block that is in neither fails
# test_every_operations_block_is_run_or_classified.
OPS_RUN = {
    "prerank tune-fusion --model model/": "test_ops_tune_fusion_validate_and_reload",
    "prerank validate-config /etc/prerank/prerank.yaml": "test_ops_tune_fusion_validate_and_reload",
    "mkdir -p models indexes": "test_ops_model_rollout_commands",
    'curl -s -H "Authorization: Bearer $(cat /etc/prerank/token)"': "test_ops_live_catalog_commands",
    "prerank build-index --model /models/current --items items.csv --updates": "test_ops_live_catalog_commands",
    # Only its upsert-items and loadtest lines (see OPS_MEASURE_SETUP).
    "prerank generate --out data --items 200000": "test_ops_live_catalog_commands",
}
OPS_NOT_RUN = {
    "docker build -f deploy/docker/Dockerfile": "needs a Docker engine (none on the build machine; the doc says so); "
                                                "Tests/deploy lints the Dockerfiles",
    "swift build -c release --product prerank --scratch-path .build-reload":
        "a measurement recipe: a Swift build plus the 1.5 GB SPEC-scale world of scripts/spec-world.sh (minutes)",
    "scripts/loadtest-upserts.sh": "a measurement recipe on the 1.5 GB SPEC-scale world of scripts/spec-world.sh (minutes)",
    "server:": "a config excerpt (YAML), not a command",
    "canary:": "a config excerpt (YAML), not a command",
    '{"status":"reloaded"': "an example answer of POST /admin/reload, not a command (test_ops_truth.py checks a live one)",
}
# The measurement setup lines of the "Measured" block (200k items, ~20 s of build-index on 2 cores).
OPS_MEASURE_SETUP = ("prerank generate --out data --items 200000", "prerank init-model --features data/features.yaml",
                     "prerank build-index --model model --items data/items.csv --out base.st")


def ops_blocks():
    text = open(os.path.join(ROOT, "docs", "OPERATIONS.md")).read()
    return [textwrap.dedent(b) for b in fenced_blocks(text)]


def ops_block(first):
    found = [b for b in ops_blocks() if b.strip().splitlines()[0].startswith(first)]
    assert len(found) == 1, f"OPERATIONS.md: {len(found)} blocks start with {first!r}"
    return found[0]


def pasted(block, subs):
    """The block with its placeholders replaced, each substitution checked to still apply."""
    for old, new in subs.items():
        assert old in block, f"substitution {old!r} no longer matches the block:\n{block}"
        block = block.replace(old, str(new))
    return block


def run_sh(script, ops, cwd, timeout=120):
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=ops["env"],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (script, out.stdout[-2000:], out.stderr[-2000:])
    return out


def json_values(text):
    """The JSON objects printed back to back (curl -s prints no newline)."""
    dec, values, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in " \n\r\t":
            i += 1
            continue
        v, i = dec.raw_decode(text, i)
        values.append(v)
    return values


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def metric(port, line_prefix):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.split()[-1])
    raise AssertionError(f"no metric {line_prefix}")


def wait_for(predicate, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.fixture(scope="module")
def ops(prerank, tmp_path_factory):
    """A world shaped like the demo's (lists of 50 candidates: OPERATIONS.md's tune-fusion K must
    fit them, issue #27), a server on it with an update log, and `prerank` on PATH (the blocks
    call it by name)."""
    d = tmp_path_factory.mktemp("ops")
    run(prerank, "generate", "--out", d / "data", "--users", 300, "--items", 3000, "--requests", 600, "--candidates", 50,
        "--seed", 5, "--quiet")
    run(prerank, "init-model", "--features", d / "data" / "features.yaml", "--out", d / "model", "--hidden", "16,8", "--d", 8)
    run(prerank, "build-index", "--model", d / "model", "--items", d / "data" / "items.csv", "--out", d / "index.st")
    (d / "token").write_text(TOKEN + "\n")
    (d / "bin").mkdir()
    (d / "bin" / "prerank").symlink_to(prerank)
    port = free_port()
    config = d / "prerank.yaml"
    write_config(config, d, port)
    config.write_text(config.read_text().replace(f"  index: {d / 'index.st'}\n",
                                                 f"  index: {d / 'index.st'}\n  updates: {d / 'updates.log'}\n"))
    server = Server(prerank, config, port)
    env = {**os.environ, "PATH": f"{d / 'bin'}:{os.environ['PATH']}"}
    try:
        yield {"dir": d, "data": d / "data", "port": port, "config": config, "server": server, "env": env,
               "token": d / "token"}
    finally:
        assert server.stop() == 0


def test_every_operations_block_is_run_or_classified():
    firsts = [b.strip().splitlines()[0] for b in ops_blocks()]
    known = list(OPS_RUN) + list(OPS_NOT_RUN)
    for first in firsts:
        matches = [k for k in known if first.startswith(k)]
        assert len(matches) == 1, f"OPERATIONS.md block {first!r}: add it to OPS_RUN (and run it) or OPS_NOT_RUN with a reason"
    for k in known:
        assert any(f.startswith(k) for f in firsts), f"{k!r} is classified but no OPERATIONS.md block starts with it"
    for name in set(OPS_RUN.values()):
        assert callable(globals().get(name)), name


def test_ops_tune_fusion_validate_and_reload(ops, tmp_path):
    """Tuning fusion weights, steps 1 and 3: search, paste the printed lines, validate, reload."""
    d, port = ops["dir"], ops["port"]
    search = pasted(ops_block("prerank tune-fusion --model model/"), {
        "--model model/": f"--model {d / 'model'}", "--index index.safetensors": f"--index {d / 'index.st'}",
        "--data test.csv": f"--data {ops['data'] / 'test.csv'}"})
    out = run_sh(search, ops, tmp_path).stdout
    assert (tmp_path / "wr-grid.svg").read_text().lstrip().startswith("<")
    # "the config lines to paste": the last fusion block printed (the overall best).
    lines = out[out.rindex("\nfusion:\n") + 1:].splitlines()
    block = [lines[0]] + [l for l in lines[1:5] if l.startswith("  ")]
    assert [l.split(":")[0].strip() for l in block] == ["fusion", "formula", "alpha", "beta", "gamma"], block
    text = ops["config"].read_text()
    start = text.index("fusion:\n")
    end = text.index("logging:")
    ops["config"].write_text(text[:start] + "\n".join(block) + "\n" + text[end:])
    apply = ops_block("prerank validate-config /etc/prerank/prerank.yaml")
    reloaded = run_sh(pasted(apply, {"/etc/prerank/prerank.yaml": ops["config"],
                                     "/etc/prerank-secret/admin-token": ops["token"],
                                     "HOST:8080": f"127.0.0.1:{port}"}), ops, tmp_path).stdout
    assert reloaded.startswith("ok: ") and json_values(reloaded[reloaded.index("{"):])[0]["status"] == "reloaded"
    fusion = get_json(port, "/v1/model")["fusion"]
    for l in block[1:]:
        key, value = (x.strip() for x in l.split(":"))
        assert str(fusion[key]) == value or (key != "formula" and float(fusion[key]) == float(value)), (key, fusion)
    # The block's other way to reload, `kill -HUP <pid>`, as written in its comment.
    hup = re.search(r"kill -HUP <pid>", apply)
    assert hup, apply
    before = metric(port, 'prerank_reloads_total{result="ok"}')
    run_sh(pasted(hup.group(0), {"<pid>": ops["server"].proc.pid}), ops, tmp_path)
    wait_for(lambda: metric(port, 'prerank_reloads_total{result="ok"}') == before + 1)


def test_ops_model_rollout_commands(ops, tmp_path):
    """Rolling out a new model and index: train, build an F16 index, inspect, eval."""
    data = ops["data"]
    block = pasted(ops_block("mkdir -p models indexes"), {
        # "..." stands for the training flags.
        "prerank train ...": f"prerank train --features {data / 'features.yaml'} --data {data / 'train.csv'} --epochs 1",
        "--items items.csv": f"--items {data / 'items.csv'}", "--data test.csv": f"--data {data / 'test.csv'}"})
    out = run_sh(block, ops, tmp_path, timeout=300).stdout
    assert "[3000, 3, " in out and "f16" in out and "fingerprint" in out  # inspect: N, dtype, fingerprint
    assert "WR@100" in out  # eval


def test_ops_live_catalog_commands(ops, tmp_path):
    """Live catalog: curl and upsert-items, fold the log with build-index --updates, inspect,
    point model.index at the new base and SIGHUP; the measured block's upsert-items and loadtest."""
    d, port, data = ops["dir"], ops["port"], ops["data"]
    header = (data / "items.csv").read_text().splitlines()[0]
    assert header == "item_id,item_category,brand,price,rating", header  # the fields the curl body sends
    (tmp_path / "new.csv").write_text(header + "\n900001,c3,mive,9.9,4.5\n900002,c7,x,19.0,3.5\n")
    (tmp_path / "gone.txt").write_text("900002\n")
    block = ops_block('curl -s -H "Authorization: Bearer $(cat /etc/prerank/token)"')
    out = run_sh(pasted(block, {
        "/etc/prerank/token": ops["token"], "127.0.0.1:8080": f"127.0.0.1:{port}",
        # [...] marks optional flags in the doc; here all of them are given.
        "[--delete gone.txt] [--batch 1000] [--model /models/current]": f"--delete gone.txt --batch 1000 --model {d / 'model'}",
    }), ops, tmp_path).stdout
    answer, sent = json_values(out)[:2]
    shown = json.loads(re.search(r"^# (\{.*\})$", block, flags=re.M).group(1))
    assert set(answer) == set(shown) and answer["upserted"] == 1 and answer["deleted"] + answer["not_found"] == 1, answer
    assert sent["replicas"][0]["items"] == get_json(port, "/v1/model")["model"]["index"]["catalog"]["items"]

    fold = ops_block("prerank build-index --model /models/current --items items.csv --updates")
    out = run_sh(pasted(fold, {
        "--model /models/current": f"--model {d / 'model'}", "--items items.csv": f"--items {data / 'items.csv'}",
        "/var/lib/prerank/updates.log": d / "updates.log", "--out /models/current/index-": f"--out {tmp_path}/index-",
        "/models/current/index-….st": f"{tmp_path}/index-*.st"}), ops, tmp_path).stdout
    assert "delta items 0" in out, out
    # "point model.index at it, then SIGHUP"
    assert "# point model.index at it, then SIGHUP" in fold
    (folded,) = tmp_path.glob("index-*.st")
    text = ops["config"].read_text()
    ops["config"].write_text(text.replace(f"  index: {d / 'index.st'}\n", f"  index: {folded}\n"))
    os.kill(ops["server"].proc.pid, signal.SIGHUP)
    wait_for(lambda: get_json(port, "/v1/model")["model"]["index"]["path"] == str(folded))
    catalog = get_json(port, "/v1/model")["model"]["index"]["catalog"]
    assert catalog["delta_items"] == 0 and catalog["items"] == sent["replicas"][0]["items"], catalog

    measured = ops_block("prerank generate --out data --items 200000")
    ids = [int(l.split(",")[0]) for l in (data / "items.csv").read_text().splitlines()[1:41]]
    (tmp_path / "reqs.jsonl").write_text("".join(json.dumps({"user": {"user_id": f"u{i}"}, "candidates": ids}) + "\n"
                                                 for i in range(8)))
    lines = [l for l in measured.splitlines() if l.strip() and not l.startswith("#")]
    assert [l for l in lines if l.startswith(OPS_MEASURE_SETUP)] == lines[:3], lines
    out = run_sh(pasted("\n".join(lines[3:]), {"127.0.0.1:18931": f"127.0.0.1:{port}",
                                              "--token-file token": f"--token-file {ops['token']}"}), ops, tmp_path).stdout
    assert re.search(r"^\| 40 \| 40 \|.*\| 0 \|", out, flags=re.M), out  # 40 req/s offered and answered, 0 errors


# Measured figures: every section of these docs that holds a table of timings or rates, or a
# "**Measured" paragraph, names the command or script that regenerates it, the date and the
# machine (its core count: all figures here come from 2-vCPU boxes).
FIGURE_DOCS = ("docs/PERFORMANCE.md", "docs/OPERATIONS.md")
FIGURE_ROW = re.compile(r"(?m)^\|.*\b(ms|req/s|rows/s|ns/row|GB/s)\b.*\|$")
FIGURE_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
FIGURE_COMMAND = re.compile(r"`(?:[A-Z_]+=\S+ )*(?:\.build[^`\s]*/)?(?:prerank |scripts/[a-z-]+\.sh|wrk )[^`]*`|```sh\n")
FIGURE_MACHINE = re.compile(r"\b2[- ](?:vCPUs?|cores?|shared cores)\b|same 2 cores")


def figure_sections(path):
    text = open(os.path.join(ROOT, path)).read()
    for section in re.split(r"(?m)^(?=#{2,4} )", text):
        if FIGURE_ROW.search(section) or "**Measured" in section:
            yield section.strip().splitlines()[0], section


@pytest.mark.parametrize("path", FIGURE_DOCS)
def test_measured_figures_name_command_date_and_machine(path):
    sections = list(figure_sections(path))
    assert sections, f"{path}: no figure sections found (did the table format change?)"
    missing = [(head, [what for what, rx in (("command", FIGURE_COMMAND), ("date", FIGURE_DATE),
                                             ("machine", FIGURE_MACHINE)) if not rx.search(sec)])
               for head, sec in sections]
    missing = [m for m in missing if m[1]]
    assert not missing, f"{path}: figure sections without " + "; ".join(f"{h!r}: {', '.join(w)}" for h, w in missing)
