"""Docs that are executed: the README's quick start and the operator commands of
docs/OPERATIONS.md run here as pasted (only a busy port or a placeholder host is substituted)."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT
from test_server import Server, free_port, world, write_config  # noqa: F401 (world is a fixture)


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


def test_readme_quick_start_serves_and_its_curl_works():
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
                            start_new_session=True, env={**os.environ, "CI": os.environ.get("CI", "")})
    try:
        wait_ready(port, proc)
        out = subprocess.run(["bash", "-c", curl.replace("127.0.0.1:8080", f"127.0.0.1:{port}")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        answer = json.loads(out.stdout)
        # What the README says the answer holds.
        assert len(answer["items"]) == 3 and answer["unknown_ids"] == [99], answer
        for item in answer["items"]:
            assert {"id", "score", "ctr", "ctcvr", "tasks"} <= set(item)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_operations_reload_command_works_as_pasted(prerank, world, tmp_path):
    """The reload command of docs/OPERATIONS.md ("curl -fsS -X POST -H Authorization … /admin/reload")."""
    ops = open(os.path.join(ROOT, "docs", "OPERATIONS.md")).read()
    lines = [l.strip() for b in fenced_blocks(ops) for l in b.splitlines() if "/admin/reload" in l and l.strip().startswith("curl")]
    assert lines, "OPERATIONS.md has no reload command"
    port = free_port()
    config = tmp_path / "c.yaml"
    write_config(config, world, port)
    s = Server(prerank, config, port)
    try:
        for line in lines:
            cmd = line.replace("HOST:8080", f"127.0.0.1:{port}").replace("/etc/prerank-secret/admin-token", str(world / "token"))
            out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, (cmd, out.stderr)
            assert json.loads(out.stdout)["status"] == "reloaded", out.stdout
    finally:
        assert s.stop() == 0
