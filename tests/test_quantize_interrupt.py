"""Interrupting ``gl quantize`` with a real signal while llama-quantize is writing.

Story: quantizing takes a while; the user presses Ctrl-C (or a supervisor
sends SIGTERM, or the machine kills gl outright). Nothing appears at OUT,
llama-quantize stops too, and the next run into the same folder completes
and leaves no temporary file behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from gl_plugins.model.gguf_header import read_header
from interrupting import EXIT, files_under, interrupt, start_gl, temporaries, wait_for

pytestmark = pytest.mark.slow


def _writing(folder: Path):
    """The partial output once llama-quantize has written a few MiB into it."""
    def check():
        return [p for p in folder.iterdir() if p.name.endswith(".gl-partial") and p.stat().st_size > 4 << 20]
    return check


def _processes_writing(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (llama-quantize writing it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if os.fsencode(path) in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _rerun_completes(folder: Path, model, out: Path) -> None:
    proc = start_gl("quantize", model, out, "--base-type", "Q8_0")
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert files_under(folder) == [out.name, out.name + ".gl.json"] and temporaries(folder) == []
    assert {t.type_name for t in read_header(out).tensors} == {"Q8_0", "F32"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_quantize_leaves_nothing_and_a_rerun_completes(tmp_path, gemma_f16, sig):
    out = tmp_path / "gemma-q8.gguf"
    proc = start_gl("quantize", gemma_f16, out, "--base-type", "Q8_0")
    (partial,) = wait_for("llama-quantize to write its output", _writing(tmp_path), proc, timeout=300)
    assert not out.exists()
    code, stdout, stderr, seconds = interrupt(proc, sig)
    assert code == EXIT[sig], stderr
    assert stderr.strip().splitlines()[-1] == "gl: interrupted" and "Traceback" not in stderr
    assert seconds < 15
    assert files_under(tmp_path) == [], f"left behind: {files_under(tmp_path)}"
    assert _processes_writing(partial) == []  # llama-quantize was stopped, not orphaned
    _rerun_completes(tmp_path, gemma_f16, out)


def test_a_run_killed_outright_is_cleaned_up_by_the_next_run(tmp_path, gemma_f16):
    out = tmp_path / "gemma-q8.gguf"
    proc = start_gl("quantize", gemma_f16, out, "--base-type", "Q8_0")
    (partial,) = wait_for("llama-quantize to write its output", _writing(tmp_path), proc, timeout=300)
    proc.send_signal(signal.SIGKILL)  # no clean-up can run: the partial file stays, llama-quantize is orphaned
    proc.communicate(timeout=60)
    for pid in _processes_writing(partial):
        os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while _processes_writing(partial) and time.monotonic() < end:
        time.sleep(0.1)
    assert not out.exists() and partial.exists()
    _rerun_completes(tmp_path, gemma_f16, out)  # the stale partial of the dead run is removed
