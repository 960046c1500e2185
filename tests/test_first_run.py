"""A new machine: nothing in the model cache. Every sample model provisions, and the main job runs.

Story: a user clones gl on a rented machine and runs the README's commands. There is no
``~/.cache/gl/models``; only the llama.cpp build may be reused (it is keyed by its version).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gl_plugins.toolchain import samples

from gl_plugins.toolchain import llamacpp
from gl_plugins.digests import sha256_file

ROOT = Path(__file__).resolve().parents[1]

# F16 bases made by the pinned llama.cpp build; a new pin may change them (then update both)
PINNED_BUILD = "0.3.36"
F16_SHA256 = {
    "gemma3-270m-f16": "2fc5918b02d754e17a06566a9a3aaea876575e6a3d33800628a6f38546547d85",
    "qwen2.5-coder-1.5b-f16": "898951bef64184eeacd1101bb2c70450d31f534456f87ac964039972d47d8cb1",
}


def _bootstrap():
    spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "bootstrap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def empty_cache(tmp_path: Path, llama_bin: Path) -> Path:
    """A gl cache with nothing in it but a link to the cached llama.cpp build."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "llama.cpp").symlink_to(llamacpp.install_dir().parent)
    return cache


def test_every_sample_model_is_provisioned_on_each_test_run():
    """bootstrap.py test provisions the same list of samples gl knows, into an empty cache."""
    boot = _bootstrap()
    assert set(boot.SAMPLE_MODELS) == set(samples.SAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(samples.SAMPLES))
def test_sample_model_into_an_empty_cache(name, tmp_path, llama_bin, gl_proc):
    cache = empty_cache(tmp_path, llama_bin)
    r = gl_proc("sample-model", name, env={"GL_CACHE": str(cache), "GL_LLAMA_CPP": "",
                                           "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.parent == cache / "models" and path.is_file()
    s = samples.sample(name)
    if s.sha256:
        assert sha256_file(path) == s.sha256
    else:
        assert llamacpp.LLAMA_CPP_PYTHON_VERSION == PINNED_BUILD, "new llama.cpp pin: update F16_SHA256"
        assert sha256_file(path) == F16_SHA256[name]
    made = {s.file} | ({samples.sample(s.source).file} if s.source else set())
    assert {p.name for p in (cache / "models").iterdir()} == made, "stray files in the model cache"
    assert {p.name for p in cache.iterdir()} == {"llama.cpp", "models", "digests.json"}
    # a second call trusts the provisioned file: no rehash, no rewrite
    mtime = path.stat().st_mtime_ns
    t0 = time.monotonic()
    again = gl_proc("sample-model", name, env={"GL_CACHE": str(cache)})
    assert again.returncode == 0 and again.stdout.strip() == str(path)
    assert path.stat().st_mtime_ns == mtime and time.monotonic() - t0 < 10


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_assembly_leaves_no_file_at_the_target(sig, tmp_path, llama_bin):
    """Killed while the 1.1 GB Qwen is being assembled: no model file; SIGTERM leaves no temporary
    either, and the next run removes what SIGKILL left and provisions the model."""
    cache = empty_cache(tmp_path, llama_bin)
    env = {**os.environ, "GL_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "gl_plugins", "sample-model", "qwen2.5-coder-1.5b"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    models = cache / "models"
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".tmp") and p.stat().st_size > 50 << 20 for p in models.glob(".*")):
        assert proc.poll() is None and time.monotonic() < deadline, "assembly ended before it was killed"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    target = models / samples.sample("qwen2.5-coder-1.5b").file
    assert not target.exists()
    leftovers = [p.name for p in models.iterdir()]
    assert leftovers == [] if sig == signal.SIGTERM else all(n.endswith(".tmp") for n in leftovers)
    r = subprocess.run([sys.executable, "-m", "gl_plugins", "sample-model", "qwen2.5-coder-1.5b"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in models.iterdir()] == [target.name]


def test_a_wrong_digest_leaves_nothing(tmp_path, monkeypatch):
    """Chunks that do not add up to the published sha256: one sentence, nothing at the target."""
    monkeypatch.setenv("GL_CACHE", str(tmp_path))
    bad = samples.Sample("broken", "broken.gguf", "a sample whose digest is wrong", sha256="0" * 64,
                        chunks=(("gl_plugins", "data/lab_evidence.jsonl"),), install="nothing")
    monkeypatch.setitem(samples.SAMPLES, "broken", bad)
    from gl_plugins.errors import GLError

    with pytest.raises(GLError, match=r"sample model broken: the assembled file has sha256 [0-9a-f]{64}, "
                                      r"expected 0{64}"):
        samples.provision("broken")
    assert list((tmp_path / "models").iterdir()) == []


def test_doctor_names_a_model_cache_it_cannot_write(tmp_path, llama_bin, gl_proc):
    cache = empty_cache(tmp_path, llama_bin)
    (cache / "models").write_text("a file where the model folder should be")
    r = gl_proc("doctor", env={"GL_CACHE": str(cache)})
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr
    assert err[0].startswith("gl: error: ") and "gemma-3-270m-q4_k_m.gguf" in err[0] and "cannot be written" in err[0]


def test_unknown_sample_model_is_one_sentence(gl):
    code, out, err = gl("sample-model", "llama9-1t")
    assert code == 2
    assert err.strip() == ("gl: error: unknown sample model 'llama9-1t'; known: gemma3-270m, gemma3-270m-f16, "
                           "qwen2.5-coder-1.5b, qwen2.5-coder-1.5b-f16")


@pytest.mark.slow
def test_main_job_from_a_clean_clone_with_an_empty_model_cache(tmp_path, llama_bin):
    """The README's main job, step by step as bootstrap.py demo runs it, in a fresh clone."""
    clone = tmp_path / "gl"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    cache = empty_cache(tmp_path, llama_bin)
    env = {**os.environ, "GL_CACHE": str(cache), "PYTHONPATH": str(clone / "src"),
           "OLLAMA_HOST": "http://127.0.0.1:9"}  # no server answers: the offline bundle
    boot = _bootstrap()
    for step in boot.DEMO_STEPS:
        r = subprocess.run([sys.executable, "-m", "gl_plugins", *step], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, f"gl {' '.join(step)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        if step[0] == "doctor":
            assert "generation         ok in" in r.stdout
    dist = clone / "examples" / "gemma3-270m" / "dist"
    bundle = sorted(p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file())
    assert any(n.endswith("Modelfile") for n in bundle) and any(n.endswith(".gguf") for n in bundle), bundle
    assert (cache / "models" / "gemma-3-270m-f16.gguf").is_file()
