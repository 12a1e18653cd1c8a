"""docs/openapi.yaml is a valid OpenAPI 3.1 document and covers every route the server has."""
import os
import re

import yaml
from openapi_spec_validator import validate

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_openapi_document_is_valid_and_complete():
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        spec = yaml.safe_load(f)
    validate(spec)
    app = open(os.path.join(ROOT, "Sources", "PreRankServer", "App", "Router.swift")).read()
    routes = set(re.findall(r'"(/[a-z0-9/]+)": \["', app))
    assert routes and routes == set(spec["paths"]), (routes, set(spec["paths"]))
