"""The llama.cpp toolchain: found where gl looks, portable, really running a quantized model."""

import json
import shutil

import pytest

from gl_plugins.toolchain import llamacpp


def test_tools_found_and_type_table_from_build(llama_bin, gl):
    code, out, err = gl("toolchain", "where")
    assert code == 0, out
    for tool in llamacpp.TOOLS:
        assert f"{tool}" in out and "not found" not in out
    table = json.loads((llamacpp.install_dir() / "ggml-types.json").read_text())
    by_name = {r["name"].upper(): r for r in table}
    # the build knows types the gguf package 0.19 does not
    assert by_name["Q2_0"]["block_size"] == 64 and by_name["Q2_0"]["type_size"] == 18
    assert by_name["Q4_K"]["block_size"] == 256 and by_name["Q4_K"]["type_size"] == 144


@pytest.mark.slow
def test_doctor_runs_a_quantized_model(gl_proc, gemma_q4):
    r = gl_proc("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "llama.cpp version" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("generation"))
    assert "ok in" in line and len(line) > 40


def test_gl_llama_cpp_folder_wins(tmp_path, llama_bin, gl):
    own = tmp_path / "mine" / "bin"
    own.mkdir(parents=True)
    shutil.copy2(llama_bin / "llama-quantize", own / "llama-quantize")
    code, out, _ = gl("toolchain", "where", env={"GL_LLAMA_CPP": str(tmp_path / "mine")})
    assert f"llama-quantize     {own / 'llama-quantize'}" in out
    assert code == 0


def test_missing_tools_are_named(tmp_path, gl):
    env = {"GL_CACHE": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin", "GL_LLAMA_CPP": ""}
    code, out, _ = gl("toolchain", "where", env=env)
    assert code == 1 and "llama-quantize     not found" in out
    code, out, _ = gl("doctor", env=env)
    assert code == 1 and "gl toolchain install" in out


@pytest.mark.slow
def test_build_is_portable(llama_bin):
    """No -march=native: no AVX-512 (zmm) instructions anywhere, AVX2 (ymm) present."""
    import subprocess

    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to check the build"
    for tool in ("llama-quantize", "llama-completion"):
        asm = subprocess.run([objdump, "-d", str(llama_bin / tool)], capture_output=True, text=True).stdout
        assert "%zmm" not in asm, f"{tool} holds AVX-512 instructions"
        assert "%ymm" in asm, f"{tool} holds no AVX2 code"


def test_a_second_install_waits_for_the_first(tmp_path):
    """Two gl processes building into one cache: the second waits on the lock instead of wiping the first's build."""
    import subprocess
    import sys
    import time

    code = ("import sys; from pathlib import Path; from gl_plugins.toolchain.llamacpp import _install_lock\n"
            "with _install_lock(Path(sys.argv[1]), lambda m: print(m, flush=True)):\n"
            "    print('got it', flush=True)\n")
    with llamacpp._install_lock(tmp_path, lambda m: None):
        p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        first = p.stdout.readline()
        assert first.startswith(f"another gl is building llama.cpp in {tmp_path / 'llama.cpp'}; waiting")
        time.sleep(0.5)
        assert p.poll() is None  # still waiting while the lock is held
    assert p.stdout.readline() == "got it\n" and p.wait(timeout=30) == 0
