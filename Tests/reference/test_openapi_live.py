"""docs/openapi.yaml against the running server, with a strict validator (openapi-core).

Every route of the document gets real requests on the small test world; each request is checked
by openapi-core's request validator — valid ones must pass, and the ones the server refuses as
caller mistakes (unknown top-level key, null candidates, bad JSON, a wrong type, no token) must
be refused by the document too — and every answer (status, content type, headers, body) by its
response validator. Response schemas are closed (additionalProperties: false), so a field the
server sends and the document does not describe fails here.
"""
import gzip
import json
import os

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from conftest import ROOT, TOKEN, free_port, Server, write_config

SPEC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")
# openapi-core matches requests by the document's server URL; the real port differs.
HOST_URL = "http://127.0.0.1:8080"
JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def spec():
    return OpenAPI.from_file_path(SPEC_PATH)


@pytest.fixture(scope="module")
def servers(prerank, world, tmp_path_factory):
    """`main`: admin token, update log, request fusion overrides allowed, a fusion-only canary
    (answers carry `arm`, /v1/model a `canary`). `locked`: no admin token, no overrides, no canary
    (the 403s and fusion_override_not_allowed)."""
    d = tmp_path_factory.mktemp("openapi-live")
    started = {}
    try:
        for name in ("main", "locked"):
            port = free_port()
            config = d / f"{name}.yaml"
            write_config(config, world, port)
            text = config.read_text()
            if name == "main":
                text = text.replace(f"  index: {world / 'index.st'}\n",
                                    f"  index: {world / 'index.st'}\n  updates: {d / 'updates.log'}\n")
                text += "canary:\n  fusion: {beta: 25.0}\n  share: 0.5\n  key: request_id\n"
            else:
                text = text.replace(f"  admin_token_file: {world / 'token'}\n", "")
                text = text.replace("allow_request_override: true", "allow_request_override: false")
            config.write_text(text)
            started[name] = Server(prerank, config, port)
        yield started
    finally:
        for s in started.values():
            assert s.stop() == 0


def item_ids(world, n):
    return [int(l.split(",")[0]) for l in (world / "data" / "items.csv").read_text().splitlines()[1:n + 1]]


def send(server, method, path, body=None, headers=None):
    """One request; returns (MockRequest for the validator, MockResponse, decoded body bytes)."""
    headers = dict(headers or {})
    raw = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    r, data = server.request(method, path, raw, headers)
    if r.getheader("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    request = MockRequest(HOST_URL, method, path, headers=headers, data=raw,
                          content_type=headers.get("Content-Type", ""))
    response = MockResponse(data, status_code=r.status, headers=dict(r.getheaders()),
                            content_type=r.getheader("Content-Type", ""))
    return request, response, r


def schema_fields(refused):
    """The fields the document's validator names, as the server writes them (`a.b[1]`)."""
    fields = set()
    for e in getattr(refused.__cause__, "schema_errors", ()):
        parts = list(e.absolute_path)
        if e.validator == "additionalProperties":
            extra = set(e.instance) - set(e.schema.get("properties", {}))
            parts = [parts + [k] for k in sorted(extra)]
        else:
            parts = [parts]
        for p in parts:
            text = ""
            for x in p:
                text += f"[{x}]" if isinstance(x, int) else (f".{x}" if text else str(x))
            fields.add(text)
    return fields


def error_schema():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)["components"]["schemas"]["Error"]


def check(spec, server, method, path, body=None, headers=None, *, status, request_valid=True):
    """Send, then hold request and response to the document. Returns the parsed JSON body.
    For a request the document refuses, the server's `field` must be one the validator names."""
    request, response, r = send(server, method, path, body, headers)
    assert r.status == status, (method, path, r.status, response.data[:300])
    if request_valid:
        spec.validate_request(request)
    else:
        with pytest.raises(Exception) as refused:
            spec.validate_request(request)
        assert "Operation" not in type(refused.value).__name__ or status in (404, 405), refused.value
        field = json.loads(response.data)["error"].get("field")
        named = schema_fields(refused.value)
        if field and named:
            assert field in named, (field, named, refused.value)
    if status in (404, 405):
        # No operation in the document for an unknown route or method: the answer is still the
        # documented error shape (info.description: every error carries {"error": …}).
        with pytest.raises(Exception):
            spec.validate_request(request)
        assert r.getheader("Content-Type") == "application/json"
        Draft202012Validator(error_schema()).validate(json.loads(response.data))
    else:
        spec.validate_response(request, response)
    ctype = r.getheader("Content-Type", "")
    return json.loads(response.data) if ctype.startswith("application/json") else response.data.decode()


def test_get_routes_match_the_document(spec, servers):
    s = servers["main"]
    assert check(spec, s, "GET", "/healthz", status=200) == {"status": "ok"}
    assert check(spec, s, "GET", "/readyz", status=200)["status"] == "ready"
    info = check(spec, s, "GET", "/v1/model", status=200)
    assert info["model"]["index"]["items"] == 3000 and info["updates"] and info["canary"]["fusion"]["beta"] == 25.0
    request, response, r = send(s, "HEAD", "/healthz")
    assert r.status == 200 and response.data == b""
    assert "prerank_requests_total" in check(spec, s, "GET", "/metrics", status=200)
    # The locked server has no canary and no update log: the optional and nullable parts.
    info = check(spec, servers["locked"], "GET", "/v1/model", status=200)
    assert info["updates"] is None and "canary" not in info


def test_prerank_answers_match_the_document(spec, servers, world):
    s = servers["main"]
    ids = item_ids(world, 30)
    user = {"user_id": "u42", "segment": "vip", "age": 31.0}
    query = {"query_terms": ["red", "shoes"], "query_category": "c12"}
    plain = check(spec, s, "POST", "/prerank", {"request_id": "r-1", "user": user, "query": query,
                                                "candidates": ids[:10] + [7], "k": 5}, JSON, status=200)
    assert len(plain["items"]) == 5 and plain["unknown_ids"] == [7] and "tasks" not in plain["items"][0]
    rel = check(spec, s, "POST", "/prerank", {"request_id": 17, "user": user, "candidates": ids[:4],
                                              "relevance": [0, 1, 2, 3], "debug": True}, JSON, status=200)
    assert rel["request_id"] == 17 and set(rel["items"][0]["tasks"]) == {"ctr", "atcr", "ctcvr"}
    fused = check(spec, s, "POST", "/prerank", {"candidates": ids[:4], "fusion": {"alpha": 1.0, "beta": 5.0, "gamma": 0.1}},
                  JSON, status=200)
    assert fused["request_id"] is None and fused["arm"] in ("primary", "canary")
    # A key sent as null is the key omitted (documented), except candidates (below).
    nulls = check(spec, s, "POST", "/prerank", {"request_id": None, "user": None, "query": {"query_terms": None},
                                                "candidates": ids[:3], "relevance": None, "k": None,
                                                "fusion": None, "debug": None}, JSON, status=200)
    assert len(nulls["items"]) == 3
    whole = check(spec, s, "POST", "/prerank", {"user": {"user_id": 3}, "k": 3}, JSON, status=200)
    assert len(whole["items"]) == 3
    # A response of 1 KiB or more is gzip-encoded when asked (the Content-Encoding header is documented).
    request, response, r = send(s, "POST", "/prerank", {"candidates": ids, "debug": True},
                                {**JSON, "Accept-Encoding": "gzip"})
    assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
    spec.validate_request(request)
    spec.validate_response(request, response)


@pytest.mark.parametrize("body,code,field", [
    (b'{"candidates": [1], "topk": 5}', "unknown_field", "topk"),
    (b'{"candidates": null}', None, "candidates"),
    (b'{not json', None, None),
    (b'', None, None),
    (b'{"k": "5"}', None, "k"),
    (b'{"k": 0}', None, "k"),
    (b'{"candidates": [1, "x"]}', None, "candidates[1]"),
    (b'{"candidates": [1], "relevance": [9]}', None, "relevance[0]"),
    (b'{"debug": "yes"}', None, "debug"),
    (b'{"fusion": {"beta": "high"}}', None, "fusion.beta"),
    (b'{"fusion": {"delta": 1}}', None, "fusion.delta"),
    (b'{"user": {"user_id": {"a": 1}}}', None, "user.user_id"),
])
def test_bad_prerank_bodies_are_refused_by_server_and_document(spec, servers, body, code, field):
    err = check(spec, servers["main"], "POST", "/prerank", body, JSON, status=400, request_valid=False)["error"]
    if code:
        assert err["code"] == code
    if field:
        assert err.get("field") == field, err


def test_other_prerank_errors(spec, servers, world):
    s = servers["main"]
    # 415: a body that is not JSON — the document has no such media type either.
    check(spec, s, "POST", "/prerank", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"},
          status=415, request_valid=False)
    # 413: over server.max_body_bytes (200,000 here). Valid by the schema: the limit is config.
    big = json.dumps({"candidates": [100000] * 30000}).encode()
    assert len(big) > 200000
    check(spec, s, "POST", "/prerank", big, JSON, status=413)
    # fusion_override_not_allowed: schema-valid, refused by config.
    err = check(spec, servers["locked"], "POST", "/prerank", {"candidates": item_ids(world, 2), "fusion": {"beta": 3}},
                JSON, status=400)["error"]
    assert err["code"] == "fusion_override_not_allowed" and err["field"] == "fusion"
    check(spec, servers["locked"], "POST", "/prerank", {"candidates": item_ids(world, 2), "fusion": {}}, JSON, status=200)
    # 404 and 405 have no operation in the document; their bodies are the error shape.
    check(spec, s, "GET", "/nope", status=404, request_valid=False)
    check(spec, s, "GET", "/prerank", status=405, request_valid=False)
    _, _, r = send(s, "POST", "/healthz")
    assert r.status == 405 and r.getheader("Allow") == "GET"
    check(spec, s, "POST", "/healthz", status=405, request_valid=False)


def test_admin_routes_match_the_document(spec, servers, world):
    s = servers["main"]
    # No token: the document's security requirement refuses the request too.
    check(spec, s, "POST", "/admin/reload", status=401, request_valid=False)
    check(spec, s, "POST", "/admin/reload", headers={"Authorization": "Bearer wrong-token"}, status=401)
    done = check(spec, s, "POST", "/admin/reload", headers=AUTH, status=200)
    assert done["status"] == "reloaded"
    # No admin token configured: 403, with a well-formed request.
    assert check(spec, servers["locked"], "POST", "/admin/reload", headers=AUTH, status=403)["error"]["code"] == "reload_disabled"

    # A column the model does not know is ignored, whatever its JSON type (here an array).
    change = {"upsert": [{"item_id": 999001, "item_category": "c3", "brand": "mive", "price": 9.9, "rating": 4.5,
                          "tags": ["new", "sale"]}],
              "delete": [item_ids(world, 1)[0]]}
    applied = check(spec, s, "POST", "/admin/items", change, {**JSON, **AUTH}, status=200)
    assert applied["upserted"] == 1 and applied["deleted"] == 1
    check(spec, s, "POST", "/admin/items", change, JSON, status=401, request_valid=False)
    err = check(spec, servers["locked"], "POST", "/admin/items", change, {**JSON, **AUTH}, status=403)["error"]
    assert err["code"] == "updates_disabled"
    # A wrong type in a row: server and document both refuse it; the server names the field.
    err = check(spec, s, "POST", "/admin/items", {"upsert": [{"item_id": "x"}]}, {**JSON, **AUTH},
                status=400, request_valid=False)["error"]
    assert err["field"].startswith("upsert[0]"), err
    err = check(spec, s, "POST", "/admin/items", {"upsert": [], "remove": [1]}, {**JSON, **AUTH},
                status=400, request_valid=False)["error"]
    assert err.get("field") == "remove", err
    # Both keys are optional and nullable: an empty change is a change (its own sequence number).
    check(spec, s, "POST", "/admin/items", {"upsert": None, "delete": None}, {**JSON, **AUTH}, status=200)
    info = check(spec, s, "GET", "/v1/model", status=200)
    assert info["model"]["index"]["catalog"]["delta_items"] >= 1


def test_admin_items_refuses_a_non_json_media_type(spec, servers):
    body = json.dumps({"delete": [424242]}).encode()
    request, response, r = send(servers["main"], "POST", "/admin/items", body,
                                {"Content-Type": "application/x-www-form-urlencoded", **AUTH})
    with pytest.raises(Exception):
        spec.validate_request(request)  # the document takes application/json only
    assert r.status == 415, (r.status, response.data)
