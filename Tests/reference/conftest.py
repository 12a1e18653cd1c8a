import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="session")
def prerank():
    """Path of the release `prerank` binary (scripts/test.sh builds it and sets PRERANK_BIN)."""
    path = os.environ.get("PRERANK_BIN")
    if not path:
        out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        path = os.path.join(out.stdout.strip(), "prerank")
    assert os.path.exists(path), f"build prerank first: {path} missing"
    return path


def run(binary, *args, check=True, input=None):
    p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, input=input, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"prerank {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
    return p


# ---------------------------------------------------------------------------------------------
# The shared test harness: the worlds the server tests serve, the config they write, the
# server process they drive. One copy here; the test modules import from conftest.

TOKEN = "s3cret-token-for-tests"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def build_world(prerank, w, *, users, items, requests, candidates, seed, hidden="16,8", d=8, token=TOKEN):
    """generate -> init-model -> build-index into `w` (data/, model/, index.st, token)."""
    run(prerank, "generate", "--out", w / "data", "--users", users, "--items", items, "--requests", requests,
        "--candidates", candidates, "--seed", seed, "--quiet")
    run(prerank, "init-model", "--features", w / "data" / "features.yaml", "--out", w / "model", "--hidden", hidden, "--d", d)
    run(prerank, "build-index", "--model", w / "model", "--items", w / "data" / "items.csv", "--out", w / "index.st")
    (w / "token").write_text(token + "\n")
    return w


@pytest.fixture(scope="session")
def make_world(prerank, tmp_path_factory):
    """A factory of read-only worlds, built once per session for each set of arguments (tests
    that change a world copy what they change into their own tmp_path)."""
    made = {}

    def make(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            made[key] = build_world(prerank, tmp_path_factory.mktemp("world"), **kwargs)
        return made[key]
    return make


@pytest.fixture(scope="session")
def world(make_world):
    """The server tests' world: 300 users, 3,000 items, a 16-8 tower with d = 8."""
    return make_world(users=300, items=3000, requests=200, candidates=20, seed=5)


def write_config(path, world, port, extra=""):
    path.write_text(f"""server:
  host: 127.0.0.1
  port: {port}
  max_body_bytes: 200000
  header_timeout_ms: 600
  body_timeout_ms: 600
  idle_timeout_ms: 3000
  admin_token_file: {world / 'token'}
model:
  dir: {world / 'model'}
  index: {world / 'index.st'}
fusion:
  formula: additive
  alpha: 1.0
  beta: 20.0
  gamma: 0.1
  allow_request_override: true
logging:
  level: info
  format: json
{extra}""")


class Server:
    """`prerank serve --config CONFIG` as a child process, ready (GET /readyz 200) on return."""

    def __init__(self, prerank, config, port):
        self.port = port
        self.config = config
        self.log = open(str(config) + ".log", "w")
        self.proc = subprocess.Popen([prerank, "serve", "--config", str(config)], stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not become ready: " + open(str(config) + ".log").read())

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method, path, body=None, headers=None):
        c = self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=20)
        return self.proc.returncode


def raw(port, payload, read_timeout=5.0):
    """Send `payload` on a new socket; everything the server sends until it closes (or goes quiet)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(read_timeout)
    s.sendall(payload)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def bodies(world):
    """Four /prerank bodies over `world`'s items: debug, relevance, whole-index, empty user."""
    ids = [int(l.split(",")[0]) for l in (world / "data" / "items.csv").read_text().splitlines()[1:60]]
    return [
        {"request_id": "a", "user": {"user_id": "u42", "segment": "vip", "age": 31},
         "query": {"query_terms": ["shirt", "x"], "query_category": "c5"}, "candidates": ids + [7, 8], "k": 10, "debug": True},
        {"request_id": "b", "user": {"user_id": 17}, "candidates": ids[:20], "relevance": [i % 4 for i in range(20)], "k": 5},
        {"request_id": "c", "user": {"user_id": "u1"}, "k": 20, "fusion": {"beta": 5}},
        {"user": {}, "candidates": ids[:3]},
    ]
