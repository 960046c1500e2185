"""docs/guide.md shows real output: the header-only steps are run again and must print exactly that.

inspect, predict, plan and plan lint read only the real model's header, so
they are quick and deterministic; their output in the guide is compared line
for line. (The llama.cpp-backed steps, imatrix, quantize, validate and
publish, were pasted from real runs too; their figures depend on the machine's
timing and are not re-run here.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
SHOWN_CACHE = "/root/.cache/gl/models"  # where the guide's runs found the model
RERUN = ("inspect", "predict", "plan")
pytestmark = pytest.mark.slow


def transcripts() -> list[tuple[str, str]]:
    """(command line, output shown) for every ``$ gl …`` block of the guide, in order."""
    out = []
    for block in re.findall(r"^```text\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"), re.M | re.S):
        if not block.startswith("$ "):
            continue
        parts = re.split(r"^\$ ", block, flags=re.M)[1:]
        for part in parts:
            command, _, shown = part.partition("\n")
            out.append((command, shown))
    return out


def test_the_guide_shows_every_step():
    commands = [c.split()[1] for c, _ in transcripts() if c.startswith("gl ")]
    for step in ("inspect", "predict", "plan", "imatrix", "quantize", "validate", "check", "publish"):
        assert step in commands, f"the guide runs no gl {step}"


def test_header_only_steps_print_what_the_guide_shows(gl, gemma_f16, tmp_path, monkeypatch):
    from gl_plugins.toolchain.samples import models_dir

    monkeypatch.chdir(tmp_path)
    ran = 0
    for command, shown in transcripts():
        argv = shlex.split(command)
        if argv[:2] == ["cat", "lab-2.5bpw.txt"]:
            Path("lab-2.5bpw.txt").write_text(shown)
            continue
        if argv[0] != "gl" or argv[1] not in RERUN or "--json" in argv:
            continue
        code, out, _ = gl(*argv[1:])
        out = out.replace(str(models_dir()), SHOWN_CACHE)
        assert out == shown, f"`{command}` now prints:\n{out}"
        ran += 1
    assert ran >= 4  # inspect, predict, plan lint, plan
