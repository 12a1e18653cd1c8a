#!/usr/bin/env python3
"""Writes the seed corpora under Fuzz/corpus/NAME/ (docs/FUZZING.md "Seeds").

Seeds come from the unit tests' and the docs' examples: HTTP requests from HTTPParserTests and
ConnectionStateMachineTests, bodies from README/docs, configs from config/. Each http seed is a
program in the http target's op format (Fuzz/Sources/PreRankFuzz/HTTPTarget.swift). Run it again
after changing a target's input format; the output is deterministic.
"""
import gzip, json, os, re, struct, zlib, hashlib, pathlib, shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Fuzz" / "corpus"


def put(name, data):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def swift_strings(path, pattern):
    text = (ROOT / path).read_text()
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', text):
        s = m.group(1)
        if re.search(pattern, s) and "\\(" not in s:
            yield s.encode().decode("unicode_escape").encode("latin-1")


# --- http: programs of ops (0-3 literal, 4 repeat, 5 clock, 6 answer, 7 write, 8 misc, 9 read size)
def literal(data):
    out = b""
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        out += bytes([0, len(part)]) + part
    return out


requests = set()
for f in ["Tests/HTTPTransportTests/HTTPParserTests.swift"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "Tests/HTTPTransportTests").glob("ConnectionStateMachineTests*.swift")):
    for s in swift_strings(f, r"HTTP/1\.[01]"):
        requests.add(s)
requests = sorted(requests)
for i, req in enumerate(requests):
    cfg = bytes([0x30 if i % 2 else 0x00])          # auto answer + auto write on every other seed
    read = bytes([9, i % 8])
    put("http", cfg + read + literal(req))
    put("http", cfg + read + literal(req) + literal(req))          # pipelined
get = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
put("http", b"\x30" + bytes([4, 0x00, 0x02, 1]) + b"\r\n" + literal(get))   # 512 blank lines, then a request
put("http", b"\x30" + bytes([9, 7, 4, 0x00, 0x08, 1]) + b"\r\n" + literal(get))   # 2048 (RFC 9112 §2.2 allows a few)
put("http", b"\x00" + literal(get) + b"\x05\x07" + literal(get))             # idle past the timeout
put("http", b"\x00" + literal(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab") + b"\x05\x05")  # body timeout
put("http", b"\x30" + literal(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") + b"\x08\x04\xff"
    + literal(b"400\r\n") + bytes([4, 0x00, 0x04, 1]) + b"a" + literal(b"\r\n0\r\n\r\n") + b"\x08\x05")  # budget stall

# --- chunked: [seed][maxBody u16] body
bodies = [b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n", b"0\r\n\r\n", b"a\r\n0123456789\r\n0\r\n\r\n",
          b"1;a=\"q\\\"x\"\r\nx\r\n0\r\n\r\n", b"FFFFFFFFFFFFFFFFF\r\n", b"zz\r\n", b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"]
for i, b in enumerate(bodies):
    put("chunked", bytes([i * 37 % 256]) + struct.pack("<H", 4096) + b)

# --- request and items: JSON bodies from the docs and tests
docs = "".join((ROOT / p).read_text() for p in ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
req = [m.group(0) for m in re.finditer(r'\{"request_id"[^\n`\']*\}', docs)]
req += ['{"candidates":[1,2,3],"relevance":[0,1.5,3],"k":2}', '{"user":{"age":31,"tags":["a",1,true,null]},"fusion":{"alpha":0.5,"beta":null}}',
        '{"request_id":12345678901234567890}', '{"candidates":[1e3]}', '{"k":0}', '{"topk":3}', '{"user":{"u":"\\ud83d\\ude00\\n"}}']
for i, b in enumerate(req):
    put("request", bytes([0 if i % 2 else 3]) + b.encode())
items = [m.group(0) for m in re.finditer(r'\{"(?:upsert|delete)"[^\n`\'#]*\}', docs)]
items += ['{"upsert":[{"item_id":123,"brand":"x","price":9.9,"tags":["a","b"]}],"delete":[456]}', '{"upsert":null,"delete":[]}',
          '{"upsert":[{"item_id":1},{"price":2}]}', '{"delete":[1,"x"]}', '{"upsert":[{"item_id":1,"p":1e20,"s":"\\u0000"}]}']
for b in items:
    put("items", b.encode())

# --- updates: [mode] ... raw logs (mode 0) and built-log programs (mode 1)
def record(seq, payload):
    head = struct.pack("<IQI", len(payload), seq, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload
log = b"PRKUPD01" + record(1, items[-4].encode()) + record(2, b'{"upsert":[],"delete":[7]}')
put("updates", b"\x00" + log)
put("updates", b"\x00" + log[:-5])
put("updates", b"\x00" + log[:30] + b"\x00" * 20 + log[30:])
put("updates", b"\x00PRKUP")
put("updates", b"\x01\x05\x03" + b"\x01\x04abcd" + b"\x02\x02xy" + b"\x07\x10" + b"\x00" + struct.pack("<H", 40))
put("updates", b"\x01\x05\x03" + b"\x01\x04abcd" + b"\x02\x02xy" + b"\x07\x10" + b"\x02" + struct.pack("<H", 0) + b"\x02" + struct.pack("<H", 12) + b"\x01")

# --- safetensors: [mode] file (0 reader, 1 item index, 2 model weights for the target's tiny spec)
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
f32 = lambda *v: struct.pack("<%df" % len(v), *v)
index = safetensors({"ids": ("I64", [2], struct.pack("<2q", 5, 9)), "vectors": ("F32", [2, 1, 2], f32(1, 2, 3, 4))},
                    {"tasks": '["ctr"]', "d": "2"})
put("safetensors", b"\x00" + index)
put("safetensors", b"\x01" + index)
put("safetensors", b"\x00" + struct.pack("<Q", 2) + b"{}")
weights = safetensors({
    "emb.user_id": ("F32", [3, 2], f32(*range(6))),
    "user.block0.weight": ("F32", [2, 2], f32(1, 0, 0, 1)), "user.block0.bias": ("F32", [2], f32(0, 0)),
    "user.block1.weight": ("F32", [2, 2], f32(1, 0, 0, 1)), "user.block1.bias": ("F32", [2], f32(0, 0)),
    "item.block0.weight": ("F32", [2, 1], f32(1, 1)), "item.block0.bias": ("F32", [2], f32(0, 0)),
    "item.block1.weight": ("F32", [2, 2], f32(1, 0, 0, 1)), "item.block1.bias": ("F32", [2], f32(0, 0)),
    "dense.item.mean": ("F32", [1], f32(0)), "dense.item.std": ("F32", [1], f32(1)), "head.bias": ("F32", [1], f32(0)),
})
put("safetensors", b"\x02" + weights)

# --- model: model.json files
spec = {"format": "prerank-model/1", "version": "v1", "tasks": [{"name": "ctr", "label": "click"}, {"name": "ctcvr", "label": "order"}],
        "architecture": {"hidden": [8], "d": 4, "fr": True, "lr": True, "clamp": True, "chain": "additive"},
        "features": [{"name": "user_id", "side": "user", "kind": "categorical", "buckets": 100, "dim": 4},
                     {"name": "tags", "side": "item", "kind": "multi", "buckets": 10, "dim": 2},
                     {"name": "price", "side": "item", "kind": "dense"}],
        "training": {"seed": 1, "notes": ["a", 1.5, None]}}
put("model", json.dumps(spec).encode())
put("model", json.dumps(spec, indent=1).encode())
bad = dict(spec, tasks=[])
put("model", json.dumps(bad).encode())
for p in sorted(ROOT.glob("Tests/**/model.json")):
    put("model", p.read_bytes())

# --- config: the shipped configs
for p in [ROOT / "config" / "prerank.yaml", *sorted((ROOT / "config" / "examples").glob("*.yaml"))]:
    put("config", p.read_bytes())
put("config", b"server:\n  port: 8080\n  prot: 1\n")
put("config", b"")

# --- gzip: [limit u16 (x16)] [budget 4 KiB units] stream
for body in [b'{"candidates":[1,2,3]}', b"x" * 100000, b""]:
    put("gzip", struct.pack("<H", 4096) + b"\x00" + gzip.compress(body, mtime=0))
    put("gzip", struct.pack("<H", 64) + b"\x02" + zlib.compress(body))
put("gzip", struct.pack("<H", 4096) + b"\x00" + gzip.compress(b"a", mtime=0)[:-3])
print("seeds:", {d.name: len(list(d.iterdir())) for d in sorted(OUT.iterdir())})
