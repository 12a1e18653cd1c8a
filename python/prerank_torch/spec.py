"""features.yaml (SPEC §3) and model.json (SPEC §1): the tasks, the features, the architecture.

Errors name the file, the line and the field (`features.yaml: line 7: features[2].kind must be
categorical, multi or dense, is "sparse"`), like `prerank train`'s checks.
"""
import json
import os

import yaml

from .errors import InputError

KINDS = ("categorical", "multi", "dense")
SIDES = ("user", "item")
ARCHS = {
    "resflow": dict(fr=True, lr=True, chain="additive"),
    "nse": dict(fr=False, lr=False, chain="additive"),
    "nse+fr": dict(fr=True, lr=False, chain="additive"),
    "nse+lr": dict(fr=False, lr=True, chain="additive"),
    "esmm": dict(fr=False, lr=False, chain="multiplicative"),
}
FORMAT = "prerank-model/1"


def architecture(name: str, hidden, d: int, clamp: bool) -> dict:
    a = ARCHS.get(name.lower())
    if a is None:
        raise InputError(f"--arch must be resflow, nse, nse+fr, nse+lr or esmm, not {name}")
    return {"hidden": list(hidden), "d": int(d), "fr": a["fr"], "lr": a["lr"], "clamp": bool(clamp), "chain": a["chain"]}


def _scalar(node):
    if isinstance(node, yaml.ScalarNode):
        return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value
    return None


def _mapping(node):
    """{key: (value_node, line)} of a mapping node."""
    return {k.value: (v, k.start_mark.line + 1) for k, v in node.value}


def load_features(path: str):
    """Returns (tasks, features) from features.yaml, validated as `prerank train` does."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e.__class__.__name__}: {e})")
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"{path}: {where}invalid YAML: {problem}")
    if not isinstance(root, yaml.MappingNode):
        raise InputError(f"{path}: line 1: must be a mapping with tasks and features")
    top = _mapping(root)
    for key, (_, line) in top.items():
        if key not in ("tasks", "features"):
            raise InputError(f"{path}: line {line}: unknown key {key}")
    if "tasks" not in top or not isinstance(top["tasks"][0], yaml.SequenceNode) or not top["tasks"][0].value:
        line = top["tasks"][1] if "tasks" in top else 1
        raise InputError(f"{path}: line {line}: tasks must be a non-empty list")
    if "features" not in top or not isinstance(top["features"][0], yaml.SequenceNode):
        line = top["features"][1] if "features" in top else 1
        raise InputError(f"{path}: line {line}: features must be a list")
    tasks = []
    for i, node in enumerate(top["tasks"][0].value):
        line = node.start_mark.line + 1
        m = _mapping(node) if isinstance(node, yaml.MappingNode) else {}
        name = _scalar(m["name"][0]) if "name" in m else None
        label = _scalar(m["label"][0]) if "label" in m else None
        if not isinstance(name, str) or not isinstance(label, str) or not name or not label:
            raise InputError(f"{path}: line {line}: tasks[{i}] needs string name and label")
        tasks.append({"name": name, "label": label})
    features = []
    for i, node in enumerate(top["features"][0].value):
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            raise InputError(f"{path}: line {line}: features[{i}] must be a mapping")
        m = _mapping(node)
        for key, (_, kline) in m.items():
            if key not in ("name", "side", "kind", "buckets", "dim"):
                raise InputError(f"{path}: line {kline}: features[{i}].{key} is not a known key")

        def get(key):
            return (_scalar(m[key][0]), m[key][1]) if key in m else (None, line)

        name, nline = get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"{path}: line {nline}: features[{i}].name must be a string")
        side, sline = get("side")
        if side not in SIDES:
            raise InputError(f"{path}: line {sline}: features[{i}].side must be user or item, is {side!r}")
        kind, kline = get("kind")
        if kind not in KINDS:
            raise InputError(f"{path}: line {kline}: features[{i}].kind must be categorical, multi or dense, is {kind!r}")
        f = {"name": name, "side": side, "kind": kind}
        if kind != "dense":
            for key in ("buckets", "dim"):
                v, vline = get(key)
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise InputError(f"{path}: line {vline}: features[{i}].{key} must be an integer ≥ 1")
                f[key] = v
        features.append(f)
    check_spec(tasks, features, path)
    return tasks, features


def check_spec(tasks, features, path):
    names = [t["name"] for t in tasks]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: tasks: duplicate task name")
    seen = set()
    for i, f in enumerate(features):
        if f["name"] in seen:
            raise InputError(f"{path}: features[{i}].name: duplicate feature {f['name']}")
        seen.add(f["name"])


def fields(features, side):
    return [f for f in features if f["side"] == side]


def width(features, side):
    return sum(1 if f["kind"] == "dense" else f["dim"] for f in fields(features, side))


def load_model_json(model_dir: str) -> dict:
    path = os.path.join(model_dir, "model.json")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read model.json ({e})")
    if spec.get("format") != FORMAT:
        raise InputError(f"{path}: format must be {FORMAT}, is {spec.get('format')!r}")
    for key in ("tasks", "architecture", "features"):
        if key not in spec:
            raise InputError(f"{path}: missing key {key}")
    return spec


# Id fields (docs/TRAINING.md "Id fields"; Sources/Training/Train/Admission.swift `IDFields`): the
# target of --id-dropout, --id-warmup-epochs, --id-lr-scale and --id-dim.
MIN_ID_BUCKETS = 5000


def resolve_id_fields(features, explicit=None):
    """`explicit` names (each a categorical or multi field) or, when None, the categorical fields
    with ≥ MIN_ID_BUCKETS buckets — as `prerank train` picks them."""
    if explicit is not None:
        embedded = {f["name"] for f in features if f["kind"] != "dense"}
        for name in explicit:
            if name not in embedded:
                raise InputError(f"--id-fields: {name} is not a categorical or multi field of features.yaml")
        return set(explicit)
    return {f["name"] for f in features if f["kind"] == "categorical" and f["buckets"] >= MIN_ID_BUCKETS}
