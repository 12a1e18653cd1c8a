"""TLS by Mozilla's intermediate profile, checked against a live server with the openssl client
(and sslyze when installed): only ECDHE + AEAD on TLS 1.2, TLS 1.3, groups X25519/P-256/P-384;
failed handshakes counted; the certificate swapped by SIGHUP, a bad pair refused."""
import http.client
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time

import pytest

from conftest import free_port, write_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed (scripts/setup-test.sh)")


def make_pair(directory, name):
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return cert, key


def served_der(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(__import__("socket").create_connection(("127.0.0.1", port), timeout=5)) as s:
        return s.getpeercert(binary_form=True)


def file_der(cert):
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def https(port, path):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def metric(port, name):
    _, data = https(port, "/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", data.decode(), re.M)
    return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def tls_server(prerank, world, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("tls")
    first, second = make_pair(d, "first"), make_pair(d, "second")
    live_cert, live_key = d / "live.crt", d / "live.key"
    shutil.copy(first[0], live_cert)
    shutil.copy(first[1], live_key)
    port = free_port()
    config = d / "prerank.yaml"
    write_config(config, world, port)
    config.write_text(config.read_text().replace("  admin_token_file:", f"  tls:\n    cert: {live_cert}\n    key: {live_key}\n  admin_token_file:")
                      .replace("level: info", "level: debug"))
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([prerank, "serve", "--config", str(config)], stdout=log, stderr=log)
    deadline = time.time() + 30
    while True:
        try:
            if https(port, "/readyz")[0] == 200:
                break
        except OSError:
            pass
        assert time.time() < deadline, (d / "server.log").read_text()
        time.sleep(0.1)
    yield {"port": port, "proc": proc, "first": first, "second": second, "live": (live_cert, live_key), "log": d / "server.log"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def s_client(port, *args):
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], input=b"", capture_output=True,
                       timeout=20)
    return p.returncode == 0 and b"Cipher is (NONE)" not in p.stdout


def test_intermediate_profile_protocols_ciphers_groups(tls_server):
    port = tls_server["port"]
    before = metric(port, "prerank_tls_handshake_failures_total")
    assert s_client(port, "-tls1_3")
    for cipher in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]:
        assert s_client(port, "-tls1_2", "-cipher", cipher), cipher
    for group in ["X25519", "P-256", "P-384"]:
        assert s_client(port, "-tls1_2", "-groups", group), group
    refused = [
        ("-tls1_2", "-cipher", "AES128-GCM-SHA256:@SECLEVEL=0"),           # RSA key exchange: no forward secrecy
        ("-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"),                  # RSA key exchange, CBC
        ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256:@SECLEVEL=0"),     # ECDHE but CBC
        ("-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA:@SECLEVEL=0"),
        ("-tls1_2", "-groups", "P-521"),
        ("-tls1_2", "-groups", "X448"),
        ("-tls1_3", "-groups", "X448"),
        ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
    ]
    for args in refused:
        assert not s_client(port, *args), args
    after = metric(port, "prerank_tls_handshake_failures_total")
    assert after - before >= len(refused)
    # Logged at debug with OpenSSL's reason.
    log = tls_server["log"].read_text()
    assert re.search(r"TLS handshake failed.*(no shared cipher|unsupported protocol|no suitable|wrong version)", log), log[-2000:]


def test_sighup_swaps_the_certificate_and_a_bad_pair_is_refused(tls_server):
    port, proc = tls_server["port"], tls_server["proc"]
    live_cert, live_key = tls_server["live"]
    (first_cert, _), (second_cert, second_key) = tls_server["first"], tls_server["second"]
    assert served_der(port) == file_der(first_cert)

    def reloads(result):
        return metric(port, f'prerank_reloads_total{{result="{result}"}}') or 0

    ok, rejected = reloads("ok"), reloads("rejected")
    shutil.copy(second_cert, live_cert)
    shutil.copy(second_key, live_key)
    proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while reloads("ok") == ok:
        assert time.time() < deadline, "the reload did not finish"
        time.sleep(0.1)
    assert served_der(port) == file_der(second_cert)

    # A certificate without its key: the reload is refused, the pair in force keeps serving.
    shutil.copy(first_cert, live_cert)
    proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while reloads("rejected") == rejected:
        assert time.time() < deadline, "the bad pair was not refused"
        time.sleep(0.1)
    assert served_der(port) == file_der(second_cert)
    assert https(port, "/healthz")[0] == 200
    assert "server.tls.key" in tls_server["log"].read_text()


def test_sslyze_mozilla_intermediate(tls_server):
    try:
        import sslyze  # noqa: F401
    except ImportError:
        pytest.skip("sslyze not installed (PyPI; scripts/setup-test.sh installs it)")
    p = subprocess.run([sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", f"127.0.0.1:{tls_server['port']}"],
                       capture_output=True, text=True, timeout=300)
    out = p.stdout
    assert "SCANS COMPLETED" in out, out + p.stderr
    # The only findings allowed are those of the self-signed test certificate.
    section = out.split("COMPLIANCE AGAINST", 1)[1]
    assert 'Mozilla\'s "intermediate" configuration' in section, section
    problems = [l.strip() for l in section.splitlines() if l.strip().startswith("*")]
    assert problems, section  # the self-signed certificate is always reported
    for line in problems:
        assert line.startswith("* certificate_"), line
    # And what the scan saw: no RSA key exchange, no CBC, only the profile's groups.
    assert re.search(r"Supported curves:\s+X25519, secp256r1, secp384r1\s*$", out, re.M), out
