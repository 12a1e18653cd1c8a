"""Reload storms against the running server (issue #10), on the small demo-sized world.

A burst of SIGHUPs and POST /admin/reload while clients keep posting: no request fails, config
changes apply, a rejected reload leaves the old config serving, and an unchanged index is shared by
every new snapshot (never re-mapped: `prerank_index_loads_total` stays 1 and `/v1/model` keeps its
`mapped_at`); a new index file is mapped exactly once.
"""
import http.client
import json
import os
import re
import shutil
import signal
import threading
import time

from conftest import TOKEN, bodies, free_port, run, Server, write_config


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", text, re.M)
    assert m, name
    return int(m.group(1))


def replace_atomically(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Clients:
    """`n` keep-alive clients posting the test bodies in turn until stopped; every status kept."""

    def __init__(self, port, payloads, n=2):
        self.port, self.payloads, self.stop_flag = port, payloads, threading.Event()
        self.statuses, self.errors = [], []
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(n)]
        for t in self.threads:
            t.start()

    def loop(self, i):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        j = i
        while not self.stop_flag.is_set():
            try:
                c.request("POST", "/prerank", self.payloads[j % len(self.payloads)], {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                self.statuses.append(r.status)
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(repr(e))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            j += 1
        c.close()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=20)


def test_reload_storm_fails_no_request_and_maps_the_index_once(prerank, world, tmp_path):
    index = tmp_path / "index.st"
    shutil.copy(world / "index.st", index)
    port = free_port()
    config = tmp_path / "prerank.yaml"
    write_config(config, world, port)
    good = config.read_text().replace(str(world / "index.st"), str(index))
    replace_atomically(config, good)
    s = Server(prerank, config, port)
    try:
        before = json.loads(s.request("GET", "/v1/model")[1])
        payloads = [json.dumps(b) for b in bodies(world)]
        clients = Clients(port, payloads)
        admin = []
        try:
            time.sleep(0.2)
            for i in range(30):
                if i == 10:
                    replace_atomically(config, good + "bogus_key: 1\n")      # rejected: the old config keeps serving
                else:
                    replace_atomically(config, good.replace("beta: 20.0", f"beta: {1 + i}.0"))
                s.proc.send_signal(signal.SIGHUP)
                if i % 10 == 5:
                    r, _ = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
                    admin.append(r.status)
                time.sleep(0.03)
            time.sleep(0.3)
        finally:
            clients.stop()
        assert clients.errors == []
        assert len(clients.statuses) >= 100, len(clients.statuses)
        assert set(clients.statuses) == {200}, {c: clients.statuses.count(c) for c in set(clients.statuses)}
        assert all(code in (200, 422) for code in admin), admin

        # The last config written (beta 30) is in force once the queued reloads are done.
        deadline = time.time() + 10
        while time.time() < deadline and json.loads(s.request("GET", "/v1/model")[1])["fusion"]["beta"] != 30.0:
            time.sleep(0.05)
        after = json.loads(s.request("GET", "/v1/model")[1])
        assert after["fusion"]["beta"] == 30.0
        assert after["model"]["index"]["mapped_at"] == before["model"]["index"]["mapped_at"]
        text = s.request("GET", "/metrics")[1].decode()
        assert metric(text, "prerank_index_loads_total") == 1
        assert metric(text, "prerank_model_loads_total") == 1
        assert metric(text, 'prerank_reloads_total{result="ok"}') >= 2
        assert metric(text, 'prerank_reload_reused_total{part="index"}') == metric(text, 'prerank_reloads_total{result="ok"}')

        # A new index file (renamed over the old path) is mapped once, by the next reload only.
        shutil.copy(world / "index.st", str(index) + ".new")
        os.replace(str(index) + ".new", index)
        r, _ = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
        assert r.status == 200
        r, _ = s.request("POST", "/admin/reload", b"", {"Authorization": "Bearer " + TOKEN})
        assert r.status == 200
        text = s.request("GET", "/metrics")[1].decode()
        assert metric(text, "prerank_index_loads_total") == 2
        assert metric(text, "prerank_model_loads_total") == 1
        remapped = json.loads(s.request("GET", "/v1/model")[1])
        assert remapped["model"]["index"]["mapped_at"] != before["model"]["index"]["mapped_at"]
        r, data = s.request("POST", "/prerank", payloads[0], {"Content-Type": "application/json"})
        assert r.status == 200, data
    finally:
        assert s.stop() == 0


def test_serve_flags_are_checked_with_one_line(prerank):
    for args, flag in [(["--port", "70000"], "--port"), (["--port=-1"], "--port"), (["--host", ""], "--host")]:
        p = run(prerank, "serve", *args, check=False)
        assert p.returncode != 0
        first = p.stderr.strip().splitlines()[0]
        assert first.startswith("Error: " + flag), p.stderr
