"""The ollama publisher against the fake server: upload once, create, confirm, push, and the faults."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import tiny_gguf
from gl_plugins import digests
from gl_plugins.errors import GLError
from gl_plugins.publish.prepare import PublishOptions, choose
from gl_plugins.publish.ollama import OllamaPublisher
from publish_support import closed_port_url, fake_ollama, private_caches, request_for, write_config  # noqa: F401

CONFIG = """
[publish]
namespace = "lab"
retry_seconds = 5

[models.tiny]
system = "Be brief."

[models.tiny.variants.q4]
gguf = "tiny.gguf"
parameters = { temperature = 0.7, num_ctx = 2048 }
"""


@pytest.fixture
def project(tmp_path):
    tiny_gguf.write(tmp_path / "tiny.gguf", extra_tensor_bytes=3 << 20)
    return write_config(tmp_path, CONFIG)


def publish(project, fake, **kw):
    lines = []
    req = request_for(project, "tiny:q4", fake.url, echo=lines, **kw)
    return OllamaPublisher().publish(req), req, lines


def posts(fake, prefix):
    return [r for r in fake.requests("POST", prefix)]


def test_first_publish_uploads_creates_and_confirms(project, fake_ollama):
    result, req, _ = publish(project, fake_ollama)
    data = (project.parent / "tiny.gguf").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert req.digest == digest
    assert result.created and not result.unchanged and result.uploaded_bytes == len(data)
    assert any(a.startswith("uploaded tiny.gguf:") and "/s)" in a for a in result.actions)
    assert "confirmed tiny:q4 with show and list" in result.actions
    # the store layout Ollama uses
    store = fake_ollama.store.root
    assert (store / "blobs" / f"sha256-{digest}").read_bytes() == data
    manifest = json.loads((store / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "q4").read_text())
    kinds = [x["mediaType"].rsplit(".", 1)[1] for x in manifest["layers"]]
    assert kinds == ["model", "template", "system", "params"]
    params = json.loads((store / "blobs" / manifest["layers"][3]["digest"].replace(":", "-")).read_text())
    assert params == {"num_ctx": 2048, "stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.7}
    config = json.loads((store / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_text())
    assert config["model_family"] == "qwen2" and config["file_type"] == "F32"
    assert [r[2] for r in fake_ollama.requests("HEAD")][:1] == [404]
    assert [r[2] for r in posts(fake_ollama, "/api/blobs")] == [201]


def test_second_publish_uploads_nothing_and_changes_nothing(project, fake_ollama, monkeypatch):
    publish(project, fake_ollama)
    manifest = fake_ollama.store.root / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "q4"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns, fake_ollama.blob_files())
    n_posts = len(fake_ollama.requests("POST"))

    def no_rehash(*a, **k):
        raise AssertionError("an unchanged file was hashed again")

    monkeypatch.setattr(digests, "sha256_file", no_rehash)
    result, _, _ = publish(project, fake_ollama)
    assert result.unchanged and not result.created and result.uploaded_bytes == 0
    assert "already on the server; nothing uploaded" in result.actions[0]
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns, fake_ollama.blob_files()) == before
    new_posts = fake_ollama.requests("POST")[n_posts:]
    assert [p[1] for p in new_posts] == ["/api/show"]


def test_a_changed_system_prompt_recreates_without_uploading(project, fake_ollama):
    publish(project, fake_ollama)
    project.write_text(CONFIG.replace("Be brief.", "Be thorough."))
    result, _, _ = publish(project, fake_ollama)
    assert result.created and result.uploaded_bytes == 0
    assert len(posts(fake_ollama, "/api/blobs")) == 1
    (system,) = [x for x in fake_ollama.manifest("tiny:q4")["layers"] if x["mediaType"].endswith(".system")]
    assert fake_ollama.store.blob(system["digest"]).read_text() == "Be thorough."


def test_500_on_create_is_retried(project, fake_ollama):
    fake_ollama.faults.fail_create = 1
    result, _, lines = publish(project, fake_ollama)
    assert result.created
    assert any("creating tiny:q4 failed (the server answered 500" in x and "attempt 2" in x for x in lines)


def test_persistent_500_on_create_ends_in_one_clear_error(project, fake_ollama):
    fake_ollama.faults.fail_create = 1000
    with pytest.raises(GLError) as e:
        publish(project, fake_ollama, retry_seconds=1)
    assert str(e.value).startswith(f"creating tiny:q4 on {fake_ollama.url} failed: the server answered 500")
    assert "gave up after retrying for 1 s" in str(e.value)
    assert fake_ollama.manifest("tiny:q4") is None


def test_connection_dropped_mid_upload_is_retried(project, fake_ollama):
    fake_ollama.faults.drop_upload_after = 1 << 20
    fake_ollama.faults.drop_upload_times = 1
    result, req, lines = publish(project, fake_ollama)
    assert result.created and result.uploaded_bytes == req.size
    assert any(x.startswith("uploading tiny.gguf failed") for x in lines)


def test_dropped_uploads_leave_no_partial_blob_and_a_rerun_completes(project, fake_ollama):
    fake_ollama.faults.drop_upload_after = 1 << 20
    fake_ollama.faults.drop_upload_times = 1000
    with pytest.raises(GLError, match=r"uploading tiny.gguf on .* failed: .*gave up after retrying"):
        publish(project, fake_ollama, retry_seconds=1)
    assert fake_ollama.blob_files() == []  # no blob, no partial file
    assert fake_ollama.manifest("tiny:q4") is None  # no model from a partial blob
    assert fake_ollama.requests("POST", "/api/create") == []
    fake_ollama.faults.drop_upload_times = 0
    result, req, _ = publish(project, fake_ollama)
    assert result.created
    assert fake_ollama.store.blob(f"sha256:{req.digest}").stat().st_size == req.size


def test_a_file_changed_behind_the_digest_cache_is_rehashed_after_a_mismatch(project, fake_ollama):
    gguf = project.parent / "tiny.gguf"
    publish(project, fake_ollama)  # caches the digest
    st = gguf.stat()
    data = bytearray(gguf.read_bytes())
    data[-1] ^= 0xFF  # same size, same mtime: the cache cannot notice
    gguf.write_bytes(bytes(data))
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digests.cached(gguf) is not None
    # the server forgets everything, so gl uploads again under the stale cached digest
    for f in [*fake_ollama.store.blobs.iterdir(), *fake_ollama.store.manifests.rglob("q4")]:
        f.unlink()
    result, req, lines = publish(project, fake_ollama)
    assert req.digest == hashlib.sha256(bytes(data)).hexdigest()
    assert any("changed since it was hashed" in x for x in lines)
    assert result.created


def test_corrupted_uploads_end_in_a_digest_mismatch_error(project, fake_ollama):
    fake_ollama.faults.corrupt_uploads = True
    with pytest.raises(GLError, match="the server computed a different sha256 for .*tiny.gguf"):
        publish(project, fake_ollama)
    assert fake_ollama.manifest("tiny:q4") is None and fake_ollama.blob_files() == []


def test_an_error_inside_the_create_stream(project, fake_ollama):
    project.write_text(CONFIG + 'template = "{{ .Prompt }"\n')
    with pytest.raises(GLError) as e:
        publish(project, fake_ollama)
    assert "creating tiny:q4" in str(e.value) and "the server reported: template:" in str(e.value)
    assert fake_ollama.manifest("tiny:q4") is None


def test_push_copies_to_the_namespace_and_pushes(project, fake_ollama):
    result, _, lines = publish(project, fake_ollama, push=True)
    assert result.pushed == "lab/tiny:q4"
    assert "copied tiny:q4 to lab/tiny:q4" in result.actions
    assert (fake_ollama.registry.root / "manifests" / "registry.ollama.ai" / "lab" / "tiny" / "q4").is_file()
    assert "  pushing manifest" in lines


def test_push_to_a_namespace_not_allowed(project, fake_ollama):
    project.write_text(CONFIG.replace('namespace = "lab"', 'namespace = "someone-else"'))
    with pytest.raises(GLError) as e:
        publish(project, fake_ollama, push=True)
    assert str(e.value).startswith("push of someone-else/tiny:q4 was refused: unauthorized")
    assert fake_ollama.manifest("tiny:q4") is not None  # the local model was still created
    assert not (fake_ollama.registry.root / "manifests").exists()


def test_unreachable_server_choice():
    url = closed_port_url()
    opts = PublishOptions(host=url)
    why = OllamaPublisher().available(opts)
    assert why == f"no Ollama server answers at {url} (connection refused)"
    with pytest.raises(GLError, match="publisher ollama cannot publish: no Ollama server answers .* use --to bundle:DIR"):
        choose("ollama", opts)
    pub, reason = choose("auto", opts)
    assert pub.name == "bundle" and reason == f"{why}; writing an offline bundle instead"


def test_dry_run_lists_the_exact_requests_and_sends_nothing(project, fake_ollama):
    req = request_for(project, "tiny:q4", fake_ollama.url)
    req.options.dry_run = True
    req.options.push = True
    result = OllamaPublisher().publish(req)
    assert fake_ollama.log == []
    methods = [(r["method"], r["path"]) for r in result.requests]
    assert methods[0] == ("HEAD", f"/api/blobs/sha256:{req.digest}")
    create = [r for r in result.requests if r["path"] == "/api/create"][0]["body"]
    assert create["files"] == {"tiny.gguf": f"sha256:{req.digest}"} and create["model"] == "tiny:q4"
    assert methods[-2:] == [("POST", "/api/copy"), ("POST", "/api/push")]
