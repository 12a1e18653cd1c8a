"""Hostile and sloppy clients over real loopback sockets (issue #10): silent sockets, dripped
heads and bodies, more silent sockets than max_connections, uploads past max_body_bytes
without Expect, RFC 9112 head rules. Every test is bounded in time.
"""
import http.client
import json
import os
import select
import socket
import threading
import time

import pytest

from conftest import TOKEN, free_port, raw, run, Server

HEAD_MS = 800
BODY_MS = 1000


def write_config(path, world, port, **server):
    keys = {"host": "127.0.0.1", "port": port, "max_body_bytes": 200000, "header_timeout_ms": HEAD_MS,
            "body_timeout_ms": BODY_MS, "idle_timeout_ms": 5000, "admin_token_file": world / "token"}
    keys.update(server)
    text = "server:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())
    text += f"model:\n  dir: {world / 'model'}\n  index: {world / 'index.st'}\nlogging:\n  level: warning\n"
    path.write_text(text)


@pytest.fixture(scope="module")
def world(make_world):
    """A small world (500 items, an 8-wide tower): these tests are about bytes, not scores."""
    return make_world(users=100, items=500, requests=10, candidates=10, seed=3, hidden="8")


def start(prerank, world, tmp_path_factory, **server):
    port = free_port()
    config = tmp_path_factory.mktemp("hostile-cfg") / "prerank.yaml"
    write_config(config, world, port, **server)
    return Server(prerank, config, port)


@pytest.fixture(scope="module")
def server(prerank, world, tmp_path_factory):
    s = start(prerank, world, tmp_path_factory)
    yield s
    assert s.stop() == 0


def read_until_closed(s, limit):
    """Everything the server sends until it closes, and when that happened."""
    s.settimeout(limit)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return out, time.time()


def test_silent_client_is_closed_at_the_head_deadline(server):
    started = time.time()
    s = socket.create_connection(("127.0.0.1", server.port))
    out, closed = read_until_closed(s, 5)
    s.close()
    elapsed = closed - started
    # Closed without an answer (no request had begun) at the head deadline, not the idle timeout.
    assert out == b"" and HEAD_MS / 1000 - 0.1 < elapsed < HEAD_MS / 1000 + 1.5, elapsed


def drip(s, data, every, until):
    """Sends `data` a byte at a time; returns what the server answered and when."""
    for b in data:
        r, _, _ = select.select([s], [], [], every)
        if r:
            break
        try:
            s.send(bytes([b]))
        except OSError:
            break
        if time.time() > until:
            break
    return read_until_closed(s, 3)


def test_dripped_head_gets_408_at_its_absolute_deadline(server):
    started = time.time()
    s = socket.create_connection(("127.0.0.1", server.port))
    out, _ = drip(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n", 0.05, started + 6)
    answered = time.time() - started
    s.close()
    assert out.startswith(b"HTTP/1.1 408"), out[:60]
    assert b"Connection: close" in out
    assert answered < HEAD_MS / 1000 + 2.0


def test_dripped_body_gets_408_at_its_absolute_deadline(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /prerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
    head_sent = time.time()
    out, _ = drip(s, b"{" + b" " * 498 + b"}", 0.05, head_sent + 6)
    s.close()
    assert out.startswith(b"HTTP/1.1 408"), out[:60]
    # The body deadline runs from the end of the head and reads do not move it.
    assert time.time() - head_sent < BODY_MS / 1000 + 3.5


def test_upload_past_max_body_reads_its_413(server):
    # http.client sends the whole body before reading: without a lingering close the server's
    # early close resets the connection and the client sees a broken pipe, not the 413.
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("POST", "/prerank", body=b"x" * 24_000_000, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 413
    assert b"body_too_large" in r.read()
    c.close()


def test_missing_host_and_bare_lf_get_400(server):
    assert raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(server.port, b"GET /healthz HTTP/1.1\nHost: x\n\n").startswith(b"HTTP/1.1 400")
    assert raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\n\r\n").startswith(b"HTTP/1.1 400")
    # HTTP/1.0 needs no Host.
    assert raw(server.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_responses_carry_a_date(server):
    r, _ = server.request("GET", "/healthz")
    assert r.status == 200 and r.getheader("Date", "").endswith(" GMT")


def test_admin_reload_without_a_body_is_not_411(server):
    out = raw(server.port, b"POST /admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nConnection: close\r\n\r\n", read_timeout=30)
    assert out.startswith(b"HTTP/1.1 200"), out[:200]


def test_curl_post_reload_without_data(server):
    import shutil
    import subprocess
    if not shutil.which("curl"):
        pytest.skip("no curl")
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "-X", "POST",
                        "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{server.port}/admin/reload"],
                       capture_output=True, text=True)
    assert p.stdout == "200", p.stdout


def test_timeouts_and_refusals_are_counted(server):
    _, data = server.request("GET", "/metrics")
    text = data.decode()
    assert 'prerank_http_timeouts_total{kind="head"}' in text
    assert 'prerank_http_timeouts_total{kind="body"}' in text
    assert 'route="(transport)",code="408"' in text
    assert 'route="(transport)",code="400"' in text
    assert "prerank_http_buffered_bytes_limit 268435456" in text


def test_silent_sockets_over_max_connections_do_not_lock_out_a_real_client(prerank, world, tmp_path_factory):
    # A long head deadline so the silent sockets are still open when the real client comes.
    s = start(prerank, world, tmp_path_factory, max_connections=10, header_timeout_ms=20000)
    silent = []
    try:
        for _ in range(25):
            silent.append(socket.create_connection(("127.0.0.1", s.port)))
        time.sleep(0.3)
        started = time.time()
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200 and time.time() - started < 1.0
        _, data = s.request("GET", "/metrics")
        evicted = [l for l in data.decode().splitlines() if l.startswith("prerank_http_connections_evicted_total ")]
        assert evicted and int(evicted[0].split()[1]) >= 15
        # Connections in the middle of a request are never evicted: with all ten slots busy
        # (half-sent heads) a new client gets 503 + Retry-After.
        for c in silent:
            c.close()
        silent = []
        time.sleep(0.3)
        for _ in range(10):
            b = socket.create_connection(("127.0.0.1", s.port))
            b.sendall(b"GET /healthz HTTP/1.1\r\n")
            silent.append(b)
        time.sleep(0.3)
        out = raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=3)
        assert out.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in out, out[:80]
    finally:
        for c in silent:
            c.close()
        assert s.stop() == 0


@pytest.mark.parametrize("port", ["70000", "65536"])
def test_serve_refuses_an_out_of_range_port_in_one_line(prerank, port):
    p = run(prerank, "serve", "--port", port, check=False)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode not in (0, -5, 132, 133, -4) and p.returncode > 0, p.returncode  # an error exit, not a trap
    assert len(lines) == 1 and "port" in lines[0] and "65535" in lines[0], p.stderr


def cpu_seconds(pid):
    """User + system CPU time the process has used, from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Server CPU the four-client flood may cost: the target. The code before the fix spent
# 48 s of CPU in 4 s of wall time on it (issue #20); the figure measured with the fix is in
# docs/HTTP.md.
FLOOD_CPU_LIMIT_S = 0.1


def test_blank_line_flood_costs_no_cpu_and_locks_no_one_out(prerank, world, tmp_path_factory):
    # Issue #20: four clients each send 1 MiB of CRLF and keep the connection open. Before the
    # fix the head was rescanned from byte 0 on every read and the empty lines were not counted
    # against max_header_bytes: both cores busy, every new request timed out. A long head
    # deadline so that the deadline cannot be what saves the server here.
    s = start(prerank, world, tmp_path_factory, header_timeout_ms=20000)
    flooders = []
    try:
        time.sleep(0.2)
        before = cpu_seconds(s.proc.pid)
        done = []

        def flood():
            c = socket.create_connection(("127.0.0.1", s.port))
            flooders.append(c)
            try:
                c.sendall(b"\r\n" * (1 << 19))
            except OSError:
                pass  # the server answered 400 and stopped taking input: that is the point
            done.append(time.time())

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        started = time.time()
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        c.request("POST", "/prerank", json.dumps({"candidates": [1, 2, 3]}).encode(), {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        answered = time.time() - started
        for t in threads:
            t.join(10)
        time.sleep(0.2)
        spent = cpu_seconds(s.proc.pid) - before
        print(f"blank-line flood: {spent:.3f} s of server CPU; /prerank answered in {answered * 1000:.1f} ms")
        assert r.status == 200 and answered < 1.0, (r.status, answered)
        assert len(done) == 4
        assert spent < FLOOD_CPU_LIMIT_S, f"the flood cost {spent:.3f} s of server CPU"
        # Each flooder was answered 400 (too many empty lines), not left hanging.
        for c in flooders:
            out, _ = read_until_closed(c, 5)
            assert out.startswith(b"HTTP/1.1 400") and b"empty lines" in out, out[:120]
    finally:
        for c in flooders:
            c.close()
        assert s.stop() == 0
