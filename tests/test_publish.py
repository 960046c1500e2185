"""gl publish, as a user runs it: the gemma3-270m example, built from the real model, onto the test server."""

from __future__ import annotations

import json
import os

import ollama
import pytest

from gl_plugins.modelfile import parse as mfmod
from publish_support import closed_port_url, copy_example, fake_ollama, private_caches, project  # noqa: F401

pytestmark = pytest.mark.slow  # the real model is validated once (llama.cpp load, generation, perplexity)

NAME = "gemma3-270m:q4"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A validation cache for the whole module: every project below links the same real GGUF."""
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(autouse=True)
def shared_validation_cache(private_caches, shared, monkeypatch):
    monkeypatch.setenv("GL_VALIDATION_CACHE", str(shared / "validations"))


def test_publish_validates_and_creates_the_model(gl, project, fake_ollama):
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", fake_ollama.url)
    assert code == 0, out + err
    assert f"publisher: ollama (an Ollama server answered at {fake_ollama.url})" in err
    assert out.strip().splitlines()[-1] == f"{NAME} published via ollama ({fake_ollama.url})"
    assert any(line.startswith("uploaded gemma3-270m-q4_k.gguf:") for line in out.splitlines())
    client = ollama.Client(host=fake_ollama.url)
    shown = client.show(NAME)
    assert "<start_of_turn>" in shown.template
    m = mfmod.parse(shown.modelfile, "show")
    assert m.system == "You are a concise assistant. Answer in one or two sentences."
    assert mfmod.typed_parameters(m) == {"stop": ["<end_of_turn>"], "temperature": 1.0, "top_k": 64,
                                         "top_p": 0.95, "num_ctx": 4096}
    assert m.licenses and m.licenses[0].startswith("Gemma is provided under")
    assert (fake_ollama.store.root / "manifests" / "registry.ollama.ai" / "library" / "gemma3-270m" / "q4").is_file()

    # the second publish uploads nothing and creates nothing
    before = len(fake_ollama.log)
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", fake_ollama.url)
    assert code == 0, out + err
    assert out.strip().splitlines()[-1] == f"{NAME} unchanged via ollama ({fake_ollama.url})"
    later = fake_ollama.log[before:]
    assert not [r for r in later if r[0] == "POST" and r[1].startswith(("/api/blobs", "/api/create"))]


def test_offline_publish_writes_a_bundle_and_says_why(gl, project):
    url = closed_port_url()
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", url)
    assert code == 0, out + err
    assert (f"publisher: bundle (no Ollama server answers at {url} (connection refused); "
            f"writing an offline bundle instead)") in err
    folder = project / "dist" / "gemma3-270m-q4"
    assert sorted(os.listdir(folder)) == ["Modelfile", "SHA256SUMS", "create-request.json", "gemma3-270m-q4_k.gguf"]
    assert mfmod.parse_file(folder / "Modelfile").from_ == "./gemma3-270m-q4_k.gguf"
    assert f"cd {folder} && ollama create {NAME} -f Modelfile" in out


def test_to_ollama_without_a_server_is_one_clear_error(gl, project):
    url = closed_port_url()
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", url, "--to", "ollama")
    assert code == 2 and out == ""
    assert err.strip() == (f"gl: error: publisher ollama cannot publish: no Ollama server answers at {url} "
                           f"(connection refused); use --to bundle:DIR to publish offline")


def test_dry_run_prints_the_modelfile_and_requests_and_changes_nothing(gl, project, fake_ollama):
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", fake_ollama.url, "--dry-run",
                        "--push")
    assert code == 0, out + err
    (chat,) = [line for line in err.splitlines() if line.startswith("chat: ")]
    # the real Gemma 3 270M GGUF carries no tokenizer.chat_template, so the family's full template is what runs
    assert chat.startswith("chat: the TEMPLATE: ") and chat.endswith(" is sent: the GGUF has no chat template")
    assert f"# Modelfile for {NAME}\n" in out
    assert "PARAMETER stop <end_of_turn>" in out
    requests = [json.loads(line) for line in out.split("# ollama: requests, in order\n", 1)[1].splitlines()]
    assert [r["path"] for r in requests][-2:] == ["/api/copy", "/api/push"]
    assert [r for r in fake_ollama.log if r[0] != "GET"] == []
    assert fake_ollama.blob_files() == []


def test_json_output(gl, project, fake_ollama):
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", fake_ollama.url, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["publisher"] == "ollama" and doc["result"]["created"] is True
    assert doc["result"]["model"] == NAME and len(doc["sha256"]) == 64
    assert "FROM " in doc["modelfile"]


def test_a_modelfile_that_does_not_fit_the_gguf_is_refused_unless_forced(gl, project, fake_ollama):
    toml = project / "gl.toml"
    toml.write_text(toml.read_text().replace('modelfile = "Modelfile"', 'family = "llama3"'))
    code, out, err = gl("publish", NAME, "--config", toml, "--host", fake_ollama.url)
    assert code == 2
    assert "modelfile-stop-not-in-vocab" in err
    assert "the Modelfile of gemma3-270m:q4 has 4 error findings" in err and "--force" in err
    assert [r for r in fake_ollama.log if r[0] != "GET"] == []
    code, out, err = gl("publish", NAME, "--config", toml, "--host", fake_ollama.url, "--force")
    assert code == 0, err


def test_push_and_a_forbidden_namespace(gl, project, fake_ollama):
    code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", fake_ollama.url, "--push")
    assert code == 0, err
    assert out.strip().endswith("; pushed as lab/gemma3-270m:q4")
    toml = project / "gl.toml"
    toml.write_text(toml.read_text().replace('namespace = "lab"', 'namespace = "strangers"'))
    code, out, err = gl("publish", NAME, "--config", toml, "--host", fake_ollama.url, "--push")
    assert code == 2
    assert err.splitlines()[-1].startswith("gl: error: push of strangers/gemma3-270m:q4 was refused: unauthorized")


def test_name_rules_are_enforced_before_any_upload(gl, project, fake_ollama):
    toml = project / "gl.toml"
    toml.write_text(toml.read_text().replace('namespace = "lab"', 'namespace = "the.lab"'))
    code, out, err = gl("publish", NAME, "--config", toml, "--host", fake_ollama.url, "--push")
    assert code == 2
    assert "publish.namespace: 'the.lab' contains '.'" in err
    assert fake_ollama.log == []
    code, out, err = gl("publish", "gemma3-270m:Q 4", "--config", toml, "--host", fake_ollama.url)
    assert code == 2 and "declares no variant 'gemma3-270m:Q 4'" in err


def test_no_secret_reaches_any_output(gl, project, fake_ollama):
    secrets = {"OLLAMA_API_KEY": "olk-secret-5e1f9a2b", "HF_TOKEN": "hf_secret_7c3d2e1f"}
    for args in ((), ("--json",), ("--push",), ("--dry-run",)):
        code, out, err = gl("publish", NAME, "--config", project / "gl.toml", "--host", fake_ollama.url, *args,
                            env=secrets)
        assert code == 0, err
        for value in secrets.values():
            assert value not in out and value not in err
    assert "Bearer olk-secret-5e1f9a2b" in fake_ollama.auth_headers  # the client did use the key
    toml = project / "gl.toml"
    toml.write_text(toml.read_text().replace('namespace = "lab"', 'namespace = "strangers"'))
    code, out, err = gl("publish", NAME, "--config", toml, "--host", fake_ollama.url, "--push", env=secrets)
    assert code == 2
    for value in secrets.values():
        assert value not in out and value not in err


def test_a_variant_failing_validation_is_refused_with_its_findings(gl, tmp_path, fake_ollama):
    from synth import write_model

    write_model(tmp_path / "broken.gguf", arch="llama", n_layer=2, hidden=256, ffn=512, vocab=512)
    (tmp_path / "gl.toml").write_text('[models.broken.variants.f16]\ngguf = "broken.gguf"\n')
    code, out, err = gl("publish", "broken:f16", "--config", tmp_path / "gl.toml", "--host", fake_ollama.url)
    assert code == 2 and out == ""
    assert "error: loads-failed: llama.cpp" in err
    assert "gl: error: broken:f16 (broken.gguf) validation has 3 error findings (generation-failed, " \
           "loads-failed, perplexity-failed); fix them or publish anyway with --force" in err
    assert [r for r in fake_ollama.log if r[0] != "GET"] == []
    code, out, err = gl("publish", "broken:f16", "--config", tmp_path / "gl.toml", "--host", fake_ollama.url,
                        "--force")
    assert code == 0, err
    assert fake_ollama.manifest("broken:f16") is not None


def test_the_example_builds_from_the_f16_base_and_publishes_end_to_end(gl, tmp_path, fake_ollama, gemma_f16):
    """examples/gemma3-270m as shipped: gl publish quantizes, validates, creates; offline it bundles."""
    folder = copy_example(tmp_path)
    code, out, err = gl("publish", NAME, "--config", folder / "gl.toml", "--host", fake_ollama.url)
    assert code == 0, out + err
    gguf = folder / "build" / "gemma3-270m-q4_k.gguf"
    assert gguf.is_file() and (folder / "build" / "gemma3-270m-q4_k.gguf.gl.json").is_file()
    assert "building " in err and "by recipe uniform" in err and "validating gemma3-270m-q4_k.gguf" in err
    assert out.strip().splitlines()[-1] == f"{NAME} published via ollama ({fake_ollama.url})"
    shown = ollama.Client(host=fake_ollama.url).show(NAME)
    from gl_plugins import digests

    assert f"sha256-{digests.sha256_file(gguf)}" in shown.modelfile
    # the same variant offline: nothing is rebuilt or revalidated, a bundle is written
    code, out, err = gl("publish", NAME, "--config", folder / "gl.toml", "--host", closed_port_url())
    assert code == 0, err
    assert "building " not in err and "validating" not in err
    bundle = folder / "dist" / "gemma3-270m-q4"
    assert os.path.samefile(bundle / "gemma3-270m-q4_k.gguf", gguf)
