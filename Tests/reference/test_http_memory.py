"""Memory under stalled uploads (issue #10): 200 clients stop half-way through 8 MB bodies.

Before the buffered-bytes budget every such client held its half body (RSS 34 MiB -> 850 MiB);
now at most `server.max_buffered_bytes` of bodies are buffered, later bodies are answered 503
+ Retry-After at once, and a new request is still answered quickly.
"""
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from test_http_hostile import start, world  # noqa: F401  (the module-scoped world fixture)

CLIENTS = 200
BODY = 8 << 20


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_stalled_uploads_keep_rss_bounded(prerank, world, tmp_path_factory):  # noqa: F811
    s = start(prerank, world, tmp_path_factory, max_body_bytes=BODY, header_timeout_ms=20000, body_timeout_ms=30000,
              max_connections=1024)
    half = b"x" * (BODY // 2)
    head = b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % BODY

    def stall(_):
        c = socket.create_connection(("127.0.0.1", s.port))
        c.settimeout(15)
        try:
            c.sendall(head)
            c.sendall(half)
        except OSError:
            pass  # refused (503) and closed after lingering: fine
        return c

    socks = []
    try:
        rss_before = status_kib(s.proc.pid, "VmRSS")
        with ThreadPoolExecutor(50) as ex:
            socks = list(ex.map(stall, range(CLIENTS)))
        time.sleep(0.5)
        rss_stalled = status_kib(s.proc.pid, "VmRSS")
        peak = status_kib(s.proc.pid, "VmHWM")
        print(f"\nRSS before {rss_before // 1024} MiB, with {CLIENTS} stalled uploads {rss_stalled // 1024} MiB, peak {peak // 1024} MiB")

        # A new request is answered within 2 s: 200, or 503 + Retry-After while the budget is spent.
        started = time.time()
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        c.request("POST", "/prerank", json.dumps({"user": {}, "candidates": [1], "k": 1}).encode(),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        took = time.time() - started
        c.close()
        assert took < 2.0, took
        assert r.status == 200 or (r.status == 503 and r.getheader("Retry-After")), r.status
        health = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        health.request("GET", "/healthz")
        assert health.getresponse().status == 200
        health.close()

        _, data = s.request("GET", "/metrics")
        text = data.decode()
        buffered = int(next(l for l in text.splitlines() if l.startswith("prerank_http_buffered_bytes ")).split()[1])
        refused = int(next(l for l in text.splitlines() if l.startswith("prerank_http_budget_refusals_total ")).split()[1])
        print(f"budget in use {buffered >> 20} MiB; {refused} refused 503; new request {took * 1000:.0f} ms ({r.status})")
        assert peak < 700 * 1024, f"peak RSS {peak // 1024} MiB"
        assert buffered <= 256 << 20 and refused > 0
    finally:
        for c in socks:
            c.close()
    # Closing the stalled clients releases their reservations.
    deadline = time.time() + 5
    while time.time() < deadline:
        _, data = s.request("GET", "/metrics")
        if "prerank_http_buffered_bytes 0\n" in data.decode():
            break
        time.sleep(0.1)
    assert "prerank_http_buffered_bytes 0\n" in data.decode()
    assert s.stop() == 0
