"""The third-party predictor in examples/predictor-plugin: pip install it, see it in gl, uninstall it.

The package is installed with pip into a virtual environment layered over the
test environment (it sees everything installed here, gl included, but takes
installs into its own site-packages), so other tests running at the same time
never see a plugin they did not ask for.
"""

from __future__ import annotations

import pytest

import json
import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from model_configs import write_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "predictor-plugin"


def _layered_env(root: Path) -> Path:
    venv.create(root, with_pip=False)
    py = root / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parents = [p for p in [*sys.path, *site.getsitepackages(), sysconfig.get_paths()["purelib"]]
               if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    (Path(purelib) / "_gl_test_parent.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in dict.fromkeys(parents)) + "\n")
    return py


def _run(py, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("GL_PLUGINS", "PYTHONPATH")}
    return subprocess.run([str(py), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def _pip(py, *args):
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), *args, "--disable-pip-version-check"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.slow
def test_example_plugin_installs_shows_up_runs_and_uninstalls(tmp_path, gemma_q4):
    py = _layered_env(tmp_path / "venv")
    r = _run(py, "-m", "gl_plugins", "plugins", "--json")
    assert r.returncode == 0, r.stderr
    assert "hidden-256" not in {p["name"] for p in json.loads(r.stdout)}

    _pip(py, "install", "--no-deps", EXAMPLE)
    try:
        r = _run(py, "-m", "gl_plugins", "plugins", "--json")
        assert r.returncode == 0, r.stderr
        rows = {p["name"]: p for p in json.loads(r.stdout)}
        assert rows["hidden-256"]["distribution"] == "gl-predictor-hidden256"
        assert rows["hidden-256"]["version"] == "0.1.0"
        assert rows["hidden-256"]["hooks"] == ["gl_register_predictors"]
        r = _run(py, "-m", "gl_plugins", "plugins")
        assert "hidden-256  0.1.0  (gl-predictor-hidden256)" in r.stdout

        # the real Gemma 3 270M: hidden size 640 is not a multiple of 256
        r = _run(py, "-m", "gl_plugins", "predict", gemma_q4, "-q", "Q2_K")
        assert r.returncode == 0, r.stderr
        assert "hidden-256       risky" in r.stdout
        assert "hidden size 640 is not a multiple of 256 (640 = 256 × 2 + 128)" in r.stdout
        r = _run(py, "-m", "gl_plugins", "predict", gemma_q4, "-q", "Q2_K", "--json")
        mine = [e for e in json.loads(r.stdout) if e["predictor"] == "hidden-256"]
        assert len(mine) == 1 and mine[0]["verdict"] == "risky"

        cfg = write_config(tmp_path / "m7", "mistral-7b-v0.3")  # 4096 = 16 × 256
        r = _run(py, "-m", "gl_plugins", "predict", cfg, "-q", "Q2_K", "--json")
        mine = [e for e in json.loads(r.stdout) if e["predictor"] == "hidden-256"]
        assert mine[0]["verdict"] == "ok"

        r = _run(py, "-m", "gl_plugins", "predict", "--evidence", "builtin")
        assert r.returncode == 0 and "  hidden-256 " in r.stdout
    finally:
        _pip(py, "uninstall", "-y", "gl-predictor-hidden256")

    r = _run(py, "-m", "gl_plugins", "plugins", "--json")
    assert "hidden-256" not in {p["name"] for p in json.loads(r.stdout)}
