import os
import shutil
import subprocess
import sys

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
