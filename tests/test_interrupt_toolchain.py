"""Interrupting ``gl toolchain install`` in the middle of compiling llama.cpp.

Story: the build takes minutes; the user (or a CI runner) stops it. The
compilers stop with gl, the cache holds no half-built tools and no build
folder, and the next ``gl toolchain install`` builds tools that run.
The sdist is copied into a private ``GL_CACHE``, so no network is needed.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from gl_plugins.toolchain import llamacpp
from interrupting import EXIT, files_under, interrupt, start_gl, temporaries, wait_for

pytestmark = pytest.mark.slow

VERSION = llamacpp.LLAMA_CPP_PYTHON_VERSION


@pytest.fixture
def private_cache(tmp_path):
    sdist = llamacpp._download_sdist(llamacpp.cache_root() / "downloads", echo=print)  # cached: no network
    (tmp_path / "downloads").mkdir()
    shutil.copy(sdist, tmp_path / "downloads" / sdist.name)
    return tmp_path


def _objects_compiled(cache):
    def check():
        builds = list((cache / "llama.cpp").glob(f".build-{VERSION}-*/build"))
        return builds and sum(1 for _ in builds[0].rglob("*.o")) >= 3
    return check


def _processes_under(folder) -> str:
    r = subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True)
    return "\n".join(line for line in r.stdout.splitlines() if "pgrep" not in line)


def test_interrupted_builds_leave_nothing_and_a_rerun_builds_working_tools(private_cache):
    env = {"GL_CACHE": str(private_cache)}
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start_gl("toolchain", "install", "-j", "2", env=env)
        wait_for("the compilers to produce object files", _objects_compiled(private_cache), proc, timeout=600,
                 poll=0.5)
        code, _, err, seconds = interrupt(proc, sig)
        assert code == EXIT[sig], err
        assert err.strip().splitlines()[-1] == "gl: interrupted" and "Traceback" not in err
        assert seconds < 30
        end = time.monotonic() + 10
        while _processes_under(private_cache) and time.monotonic() < end:
            time.sleep(0.2)
        assert _processes_under(private_cache) == "", "compilers kept running after gl stopped"
        assert files_under(private_cache / "llama.cpp") == [], "a build folder or half-built tools remain"
        assert files_under(private_cache / "downloads") == [f"llama_cpp_python-{VERSION}.tar.gz"]

    proc = start_gl("toolchain", "install", "-j", "2", env=env)
    out, err = proc.communicate(timeout=3000)
    assert proc.returncode == 0, err[-3000:]
    bin_dir = private_cache / "llama.cpp" / VERSION / "bin"
    assert f"llama.cpp tools ready in {bin_dir}" in out
    assert temporaries(private_cache) == []
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted([*llamacpp.TOOLS, *llamacpp.HELPERS])
    r = subprocess.run([str(bin_dir / "llama-quantize"), "--help"], capture_output=True, text=True, timeout=60)
    assert "usage" in (r.stdout + r.stderr).lower()
