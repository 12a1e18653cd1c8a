"""python/ as a user installs it: `pip install ./python` into a new virtual environment of their
own, then the `prerank-torch` entry point. The new environment sees the project environment's
locked torch, numpy, ... through a .pth file (so the test downloads nothing: `--no-index`), which
checks that python/pyproject.toml's dependency ranges accept the locked versions and that the
package and its entry point install and run outside the source tree."""
import os
import subprocess
import sys
import sysconfig
import tomllib

from conftest import ROOT


def test_pip_install_python_into_a_fresh_venv_and_run_help(tmp_path):
    venv = tmp_path / "user-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "project-env.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    # venv's own setuptools (65 on Python 3.11) would shadow the locked one and lacks bdist_wheel
    # without the `wheel` package; the build backend comes from the lock like everything else.
    subprocess.run([py, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True, timeout=120)
    p = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                        "--no-build-isolation", os.path.join(ROOT, "python")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    # Run from outside the source tree, with no PYTHONPATH: the installed package, not python/.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    h = subprocess.run([venv / "bin" / "prerank-torch", "--help"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    assert h.returncode == 0, h.stderr
    assert "train" in h.stdout
    where = subprocess.run([py, "-c", "import prerank_torch; print(prerank_torch.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout
    assert where.startswith(site), where


def test_pyproject_keeps_ranges_for_what_the_trainer_lock_pins():
    """pyproject.toml names each top-level trainer requirement (as a range, not a pin)."""
    deps = tomllib.load(open(os.path.join(ROOT, "python", "pyproject.toml"), "rb"))["project"]["dependencies"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for d in deps}
    wanted = [l.strip().lower() for l in open(os.path.join(ROOT, "requirements", "trainer.in"))
              if l.strip() and not l.startswith("#")]
    assert set(wanted) <= names, (wanted, names)
    assert not any("==" in d for d in deps), deps


def test_scripts_run_python_only_through_the_project_environment():
    """Every script runs Python as $PY (.venv/bin/python, scripts/lib.sh), never whatever python3
    is first on PATH; only the scripts that make environments call python3 itself, and
    gpu-smoke.sh falls back to it on a GPU machine that has no project environment."""
    import re
    makers = {"lock-python.sh", "setup-test.sh", "gpu-smoke.sh"}
    scripts = os.path.join(ROOT, "scripts")
    offenders = []
    for name in sorted(os.listdir(scripts)):
        if not name.endswith(".sh") or name in makers:
            continue
        for n, line in enumerate(open(os.path.join(scripts, name)), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(^|[\s;(|&`\"'])python3?(\s|$)", code) or re.search(r"\bpip3?\s+install", code):
                offenders.append(f"{name}:{n}: {line.strip()}")
    assert not offenders, offenders
