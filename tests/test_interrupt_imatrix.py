"""Interrupting ``gl imatrix convert`` with a real SIGINT or SIGTERM in the middle of writing.

Story: converting a large imatrix, the user presses Ctrl-C (or a supervisor
sends SIGTERM). The target does not appear half-written, no temporary file is
left beside it, and running the command again completes.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

from gl_plugins.imatrix.formats import OutEntry, read_imatrix, write_gguf
from interrupting import EXIT, files_under, interrupt, start_gl, temporaries, wait_for

N_ENTRIES, NE0 = 48, 1 << 20  # 192 MiB of values: several seconds of conversion on a shared core


@pytest.fixture(scope="module")
def big_imatrix(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.gguf"
    entries = [OutEntry(f"blk.{i}.ffn_down.weight", 1, NE0, False,
                        (lambda i=i: (np.full((1, NE0), 512.0 * (i + 1), np.float32), np.array([512.0]), None)))
               for i in range(N_ENTRIES)]
    write_gguf(path, entries, datasets=["calibration.txt"], chunk_count=4, chunk_size=128)
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_convert_leaves_nothing_and_a_rerun_completes(tmp_path, big_imatrix, sig):
    out = tmp_path / "big.dat"
    proc = start_gl("imatrix", "convert", big_imatrix, out)
    # the temporary output exists and is growing: the conversion is in the middle of writing
    tmp = wait_for("the temporary output to grow", lambda: [p for p in tmp_path.iterdir()
                                                            if p.name.endswith(".tmp") and p.stat().st_size > 1 << 20],
                   proc)
    assert not out.exists()
    code, stdout, stderr, seconds = interrupt(proc, sig)
    assert code == EXIT[sig], stderr
    assert stderr.strip().splitlines()[-1] == "gl: interrupted" and "Traceback" not in stderr
    assert seconds < 10
    assert files_under(tmp_path) == [], f"left behind: {files_under(tmp_path)} (was writing {tmp[0].name})"

    proc = start_gl("imatrix", "convert", big_imatrix, out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert files_under(tmp_path) == ["big.dat"] and temporaries(tmp_path) == []
    imx = read_imatrix(out)
    assert imx.format == "dat" and len(imx.entries) == N_ENTRIES
    assert imx.entries[f"blk.{N_ENTRIES - 1}.ffn_down.weight"].counts.tolist() == [4]
