"""Faults while publishing: a real signal in the middle of the upload, a server that lost the blob, 5xx for good.

Story: ``gl publish`` is uploading the real Gemma 3 270M over a slow link when
the user presses Ctrl-C (or a supervisor sends SIGTERM). The server keeps no
partial blob and no model; nothing temporary stays on either side; the next
``gl publish`` completes. A server that restarted (and pruned the blob) after
the upload gets it again before anything is created from it, and a server that
keeps failing is given up on inside the configured time.
"""

from __future__ import annotations

import signal
import time

import pytest

from gl_plugins.errors import GLError
from gl_plugins.publish.ollama import OllamaPublisher
from interrupting import EXIT, interrupt, start_gl, temporaries, wait_for
from publish_support import (fake_ollama, private_caches, project, request_for,  # noqa: F401
                             write_config, written_by_llama_quantize)

NAME = "gemma3-270m:q4"


@pytest.fixture(scope="module")
def validations(tmp_path_factory):
    """One validation of the real model for the module: every project links the same file."""
    return tmp_path_factory.mktemp("validations")


def _partial_upload(server):
    def check():
        return [p for p in server.store.blobs.glob("*-partial") if p.stat().st_size > 0]
    return check


@pytest.mark.slow  # validates and uploads the real Gemma 3 270M through a real process
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_publish_interrupted_mid_upload_leaves_nothing_and_the_rerun_completes(project, fake_ollama, validations,
                                                                                 tmp_path, sig):
    env = {"GL_VALIDATION_CACHE": str(validations), "GL_DIGEST_CACHE": str(tmp_path / "cache" / "digests.json")}
    args = ("publish", NAME, "--config", project / "gl.toml", "--to", "ollama", "--host", fake_ollama.url)
    fake_ollama.faults.upload_bytes_per_second = 24 << 20  # about 10 s for the 253 MB file
    proc = start_gl(*args, env=env)
    wait_for("the upload to begin", _partial_upload(fake_ollama), proc, timeout=900)
    code, out, err, seconds = interrupt(proc, sig)
    assert code == EXIT[sig], err
    assert err.strip().splitlines()[-1] == "gl: interrupted" and "Traceback" not in err
    assert seconds < 10
    end = time.monotonic() + 15  # the server notices the closed connection after its current block
    while fake_ollama.blob_files() and time.monotonic() < end:
        time.sleep(0.1)
    assert fake_ollama.blob_files() == [], "a partial blob stayed on the server"
    assert fake_ollama.manifest(NAME) is None and fake_ollama.requests("POST", "/api/create") == []
    assert temporaries(project) == [] and temporaries(tmp_path / "cache") == []

    fake_ollama.faults.upload_bytes_per_second = None
    proc = start_gl(*args, env=env)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == f"{NAME} published via ollama ({fake_ollama.url})"
    gguf = project / "build" / "gemma3-270m-q4_k.gguf"
    (blob,) = [b for b in fake_ollama.blob_files() if fake_ollama.store.blobs.joinpath(b).stat().st_size
               == gguf.stat().st_size]
    assert fake_ollama.manifest(NAME) is not None
    assert temporaries(project) == [] and temporaries(tmp_path / "cache") == []


CONFIG = """
[publish]
retry_seconds = 2

[models.tiny.variants.q4]
gguf = "tiny.gguf"
"""


@pytest.fixture
def tiny_project(tmp_path, llama_bin):
    written_by_llama_quantize(tmp_path / "tiny.gguf")
    return write_config(tmp_path, CONFIG)


def test_a_blob_the_server_lost_after_the_upload_is_uploaded_again_before_create(tiny_project, fake_ollama):
    fake_ollama.faults.prune_after_upload = 1
    lines = []
    req = request_for(tiny_project, "tiny:q4", fake_ollama.url, echo=lines)
    result = OllamaPublisher().publish(req)
    assert result.created
    assert f"the server no longer holds blob sha256:{req.digest[:12]}; uploading it again" in lines
    assert [r[2] for r in fake_ollama.requests("POST", "/api/blobs")] == [201, 201]
    assert fake_ollama.store.blob(f"sha256:{req.digest}").stat().st_size == req.size


def test_a_server_that_never_keeps_the_blob_gets_no_create(tiny_project, fake_ollama):
    fake_ollama.faults.prune_after_upload = 1000
    req = request_for(tiny_project, "tiny:q4", fake_ollama.url)
    with pytest.raises(GLError, match=r"does not keep blob sha256:\w{12} \(tiny.gguf\) after storing it; no model"):
        OllamaPublisher().publish(req)
    assert fake_ollama.requests("POST", "/api/create") == [] and fake_ollama.manifest("tiny:q4") is None


def test_retries_of_a_failing_server_stop_inside_the_configured_time(tiny_project, fake_ollama):
    fake_ollama.faults.fail_create = 1000
    lines = []
    req = request_for(tiny_project, "tiny:q4", fake_ollama.url, echo=lines)
    t0 = time.monotonic()
    with pytest.raises(GLError, match="gave up after retrying for 2 s"):
        OllamaPublisher().publish(req)
    elapsed = time.monotonic() - t0
    assert 2 <= elapsed < 6, elapsed
    waits = [float(x.rsplit(" in ", 1)[1].split()[0]) for x in lines if "; attempt " in x]
    assert len(waits) >= 2 and waits[1] > waits[0]  # backoff grows
    assert fake_ollama.manifest("tiny:q4") is None
