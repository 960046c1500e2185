"""The ollama publisher against the test server: upload once, create, confirm, push, and the faults.

The models are small synthetic GGUFs that llama.cpp loads, because the server
runs the real llama-quantize COPY at create, as Ollama 0.30 and newer do.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import tiny_gguf
from gl_plugins import digests
from ollama_fake import KnownTemplate
from synth import SynthSpec, write_model
from gl_plugins.errors import GLError
from gl_plugins.publish.prepare import PublishOptions, choose
from gl_plugins.publish.ollama import OllamaPublisher
from publish_support import (closed_port_url, fake_ollama, private_caches, request_for,  # noqa: F401
                             write_config, written_by_gguf_py, written_by_llama_quantize)

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
def project(tmp_path, llama_bin):
    written_by_llama_quantize(tmp_path / "tiny.gguf")
    return write_config(tmp_path, CONFIG)


def publish(project, fake, name="tiny:q4", **kw):
    lines = []
    req = request_for(project, name, fake.url, echo=lines, **kw)
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
    assert config["model_family"] == "llama" and config["file_type"] == "F32"
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
    assert any(a.endswith("already on the server; nothing uploaded") for a in result.actions)
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
    asked = list(fake_ollama.log)
    assert [r[1] for r in asked] == ["/api/tags", "/api/version"]  # available(), before the request is built
    result = OllamaPublisher().publish(req)
    assert fake_ollama.log == asked
    methods = [(r["method"], r["path"]) for r in result.requests]
    assert methods[:2] == [("GET", "/api/version"), ("HEAD", f"/api/blobs/sha256:{req.digest}")]
    create = [r for r in result.requests if r["path"] == "/api/create"][0]["body"]
    assert create["files"] == {"tiny.gguf": f"sha256:{req.digest}"} and create["model"] == "tiny:q4"
    assert methods[-2:] == [("POST", "/api/copy"), ("POST", "/api/push")]


# ---------------------------------------------------------------- what Ollama 0.33 does at create and show

def model_digest(fake, name):
    (layer,) = [x for x in fake.manifest(name)["layers"] if x["mediaType"].endswith(".model")]
    return layer["digest"].removeprefix("sha256:")


def test_a_gguf_not_written_by_llama_quantize_publishes_then_republishes_unchanged(tmp_path, llama_bin,
                                                                                    fake_ollama):
    gguf = written_by_gguf_py(tmp_path / "tiny.gguf")
    original = hashlib.sha256(gguf.read_bytes()).hexdigest()
    config = write_config(tmp_path, CONFIG)
    result, req, _ = publish(config, fake_ollama)
    assert req.digest != original  # gl uploaded the COPY, not the file
    assert any(a.startswith("tiny.gguf is not canonical: llama-quantize --allow-requantize COPY rewrites it "
                            f"(sha256 {original[:12]} -> {req.digest[:12]})") for a in result.actions)
    assert result.created and model_digest(fake_ollama, "tiny:q4") == req.digest
    assert f"sha256-{original}" not in fake_ollama.blob_files()
    again, req2, _ = publish(config, fake_ollama)
    assert again.unchanged and not again.created and req2.digest == req.digest
    assert any("(remembered)" in a for a in again.actions)  # COPY ran once
    assert len(fake_ollama.requests("POST", "/api/create")) == 1


def test_a_server_whose_copy_writes_other_bytes_is_remembered(project, fake_ollama):
    fake_ollama.faults.copy_writes_other_bytes = True
    result, req, _ = publish(project, fake_ollama)
    stored = model_digest(fake_ollama, "tiny:q4")
    assert stored != req.digest and result.created
    assert any(a.startswith(f"the server stored sha256:{stored[:12]} for the uploaded sha256:{req.digest[:12]}")
               for a in result.actions)
    again, _, _ = publish(project, fake_ollama)
    assert again.unchanged


def test_a_gguf_llama_cpp_cannot_load_is_refused_before_upload(tmp_path, llama_bin, fake_ollama):
    tiny_gguf.write(tmp_path / "tiny.gguf")  # a vocabulary and one tensor: no model llama.cpp can load
    config = write_config(tmp_path, CONFIG)
    with pytest.raises(GLError) as e:
        publish(config, fake_ollama)
    assert str(e.value).startswith(f"{tmp_path / 'tiny.gguf'}: llama-quantize cannot copy this GGUF")
    assert "failed to validate GGUF with llama-quantize" in str(e.value)
    assert fake_ollama.requests("POST") == []


def test_the_server_refuses_at_create_what_llama_quantize_cannot_load(tmp_path, fake_ollama):
    import ollama

    gguf = tiny_gguf.write(tmp_path / "tiny.gguf")
    client = ollama.Client(host=fake_ollama.url)
    digest = client.create_blob(gguf)
    with pytest.raises(ollama.ResponseError) as e:
        list(client.create("tiny:q4", files={"tiny.gguf": digest}, stream=True))
    assert e.value.error.startswith("failed to validate GGUF with llama-quantize without compatibility patches:")
    assert fake_ollama.manifest("tiny:q4") is None


def test_a_context_of_a_million_tokens_publishes_and_stays_unchanged(project, fake_ollama):
    project.write_text(CONFIG.replace("num_ctx = 2048", "num_ctx = 1048576"))
    result, _, _ = publish(project, fake_ollama)
    assert result.created
    import ollama

    shown = ollama.Client(host=fake_ollama.url).show("tiny:q4")
    assert "PARAMETER num_ctx 1.048576e+06\n" in shown.modelfile  # Go's %v of a JSON float64
    assert f"{'num_ctx':<30} 1.048576e+06" in shown.parameters.splitlines()
    assert publish(project, fake_ollama)[0].unchanged


GEMMA4 = """
[models.g4]
[models.g4.variants.e2b]
gguf = "g4.gguf"
"""


def test_a_gemma4_variant_is_rendered_by_ollama_with_the_library_parameters(tmp_path, llama_bin, fake_ollama):
    gguf = tmp_path / "g4.gguf"
    write_model(gguf, SynthSpec(arch="gemma4", n_layer=2, hidden=256, ffn=512, ple=16))
    config = write_config(tmp_path, GEMMA4)
    result, req, _ = publish(config, fake_ollama, name="g4:e2b")
    assert req.family == "gemma4" and req.chat_format.kind == "renderer"
    assert {k: req.create.get(k) for k in ("template", "renderer", "parser", "requires")} == {
        "template": None, "renderer": "gemma4", "parser": "gemma4", "requires": "0.20.0"}
    assert result.created
    import ollama

    shown = ollama.Client(host=fake_ollama.url).show("g4:e2b")
    lines = shown.modelfile.splitlines()
    assert "TEMPLATE {{ .Prompt }}" in lines and "RENDERER gemma4" in lines and "PARSER gemma4" in lines
    assert sorted(x for x in lines if x.startswith("PARAMETER")) == [
        "PARAMETER stop <turn|>", "PARAMETER temperature 1", "PARAMETER top_k 64", "PARAMETER top_p 0.95"]
    config_blob = fake_ollama.store.blob(fake_ollama.manifest("g4:e2b")["config"]["digest"])
    assert json.loads(config_blob.read_text())["requires"] == "0.20.0"
    assert publish(config, fake_ollama, name="g4:e2b")[0].unchanged


def test_gemma4_on_a_server_older_than_0_20_is_refused(tmp_path, llama_bin, fake_ollama):
    write_model(tmp_path / "g4.gguf", SynthSpec(arch="gemma4", n_layer=2, hidden=256, ffn=512, ple=16))
    config = write_config(tmp_path, GEMMA4)
    fake_ollama.version = "0.19.2"
    with pytest.raises(GLError, match=r"Ollama 0\.19\.2 cannot run Gemma 4: .* arrived in Ollama 0\.20\.0"):
        publish(config, fake_ollama, name="g4:e2b")


def test_a_server_before_the_copy_rewrite_gets_the_file_as_it_is(tmp_path, llama_bin, fake_ollama):
    gguf = written_by_gguf_py(tmp_path / "tiny.gguf")
    fake_ollama.version = "0.29.0"
    result, req, _ = publish(write_config(tmp_path, CONFIG), fake_ollama)
    assert req.digest == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert "Ollama 0.29.0 stores the GGUF as uploaded (the llama-quantize COPY at create starts at 0.30.0-rc16)" \
        in result.actions


DETECTED = """
[models.tiny]
[models.tiny.variants.q4]
gguf = "tiny.gguf"
modelfile = "Modelfile"
"""


def test_a_detected_template_and_its_stop_are_accepted_when_gl_sends_none(project, fake_ollama):
    """detectChatTemplate stores a template and merges its parameters under the ones sent."""
    fake_ollama.templates = [KnownTemplate("chatml-like", tiny_gguf.CHATML_TEMPLATE, "{{ .Prompt }}<|im_end|>",
                                           stop=["<|im_end|>"])]
    (project.parent / "Modelfile").write_text("FROM ./tiny.gguf\nPARAMETER temperature 0.5\n")
    project.write_text(DETECTED)
    result, req, lines = publish(project, fake_ollama)
    assert "template" not in req.create and result.created
    assert "  using autodetected template chatml-like" in lines
    params = [x for x in fake_ollama.manifest("tiny:q4")["layers"] if x["mediaType"].endswith(".params")]
    assert json.loads(fake_ollama.store.blob(params[0]["digest"]).read_text()) == {"stop": ["<|im_end|>"],
                                                                                   "temperature": 0.5}
    assert publish(project, fake_ollama)[0].unchanged


def test_a_name_in_another_case_reaches_the_existing_model(project, fake_ollama):
    publish(project, fake_ollama)
    project.write_text(CONFIG.replace("Be brief.", "Be thorough.").replace("[models.tiny", "[models.Tiny"))
    result, req, _ = publish(project, fake_ollama, name="Tiny:q4")
    assert result.created  # confirmed although the server kept the name tiny:q4 (getExistingName)
    assert [m for m in os.listdir(fake_ollama.store.manifests / "registry.ollama.ai" / "library")] == ["tiny"]


def test_a_gguf_whose_chat_template_can_do_more_gets_no_template(tmp_path, llama_bin, fake_ollama):
    """shouldPreferChatTemplate (server/images.go) would pass gl's TEMPLATE over: gl sends none."""
    written_by_llama_quantize(tmp_path / "tiny.gguf", chat_template=tiny_gguf.THINKING_JINJA)
    config = write_config(tmp_path, CONFIG.replace('[models.tiny]\n', '[models.tiny]\nfamily = "qwen2.5"\n'))
    result, req, _ = publish(config, fake_ollama)
    assert req.chat_format.kind == "gguf" and "template" not in req.create
    assert req.create["parameters"]["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert result.created
    import ollama

    assert ollama.Client(host=fake_ollama.url).show("tiny:q4").template == "{{ .Prompt }}"
    assert publish(config, fake_ollama)[0].unchanged


def test_without_llama_quantize_the_file_goes_as_it_is_and_the_servers_digest_is_remembered(
        tmp_path, llama_bin, fake_ollama, monkeypatch):
    gguf = written_by_gguf_py(tmp_path / "tiny.gguf")
    config = write_config(tmp_path, CONFIG)
    for var in ("GL_LLAMA_CPP",):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GL_CACHE", str(tmp_path / "no-tools"))  # gl finds no llama.cpp build
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result, req, _ = publish(config, fake_ollama)
    assert req.digest == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert any(a.startswith("llama-quantize is not installed") for a in result.actions)
    assert any(a.startswith("the server stored sha256:") for a in result.actions)
    assert publish(config, fake_ollama)[0].unchanged


def test_a_dry_run_after_a_publish_names_the_canonical_copy(tmp_path, llama_bin, fake_ollama):
    written_by_gguf_py(tmp_path / "tiny.gguf")
    config = write_config(tmp_path, CONFIG)
    _, published, _ = publish(config, fake_ollama)
    req = request_for(config, "tiny:q4", fake_ollama.url)
    req.options.dry_run = True
    result = OllamaPublisher().publish(req)
    assert result.requests[1] == {"method": "HEAD", "path": f"/api/blobs/sha256:{published.digest}"}
    assert any(a.startswith("tiny.gguf is not canonical (remembered)") for a in result.actions)
