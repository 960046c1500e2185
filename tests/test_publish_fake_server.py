"""The test suite's Ollama stand-in answers the official client as Ollama v0.33.0-rc2's source does.

Each test names the Go function it holds the stand-in to (tests/ollama_fake.py cites them too).
"""

from __future__ import annotations

import hashlib

import ollama
import pytest

import tiny_gguf
from publish_support import fake_ollama, private_caches, written_by_gguf_py  # noqa: F401
from synth import SynthSpec, write_model


@pytest.fixture
def client(fake_ollama):
    return ollama.Client(host=fake_ollama.url)


@pytest.fixture
def gguf(tmp_path, llama_bin):
    """A model llama.cpp loads, written by gguf-py (so the create-time COPY changes its bytes)."""
    return written_by_gguf_py(tmp_path / "m.gguf")


def digest_of(path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def layer(fake, name, kind):
    (x,) = [x for x in fake.manifest(name)["layers"] if x["mediaType"] == f"application/vnd.ollama.image.{kind}"]
    return x


def test_version(client):
    assert client._client.get("/api/version").json() == {"version": "0.33.0-rc2"}


def test_blob_status_codes(client, gguf):
    """HeadBlobHandler and CreateBlobHandler (server/routes.go), BlobsPath (manifest/paths.go)."""
    d = digest_of(gguf)
    assert client._client.head(f"/api/blobs/{d}").status_code == 404
    assert client._client.head("/api/blobs/sha256:xyz").status_code == 400
    assert client._client.post(f"/api/blobs/{d}", content=gguf.read_bytes()).status_code == 201
    assert client._client.head(f"/api/blobs/{d}").status_code == 200
    assert client._client.head(f"/api/blobs/{d.replace(':', '-')}").status_code == 200  # sha256-<hex> too
    assert client._client.post(f"/api/blobs/{d}", content=gguf.read_bytes()).status_code == 200
    other = "sha256:" + "0" * 64
    r = client._client.post(f"/api/blobs/{other}", content=b"not these bytes")
    assert r.status_code == 400 and r.json()["error"].startswith(f'digest mismatch, expected "{other}", got "sha256:')
    assert client._client.head(f"/api/blobs/{other}").status_code == 404


@pytest.mark.parametrize("spelling", ["sha256-{hex}", "sha256:{HEX}"])
def test_a_blob_post_matches_only_sha256_colon_lowercase(client, tmp_path, spelling):
    """CreateBlobHandler compares the path's digest with the computed sha256:<lowercase hex> literally."""
    data = b"some bytes"
    hexd = hashlib.sha256(data).hexdigest()
    r = client._client.post(f"/api/blobs/{spelling.format(hex=hexd, HEX=hexd.upper())}", content=data)
    assert r.status_code == 400 and r.json()["error"].startswith("digest mismatch")


def test_create_runs_llama_quantize_copy_and_stores_its_result(client, gguf, fake_ollama):
    """createModel -> copyLayerWithLlamaQuantize (server/create.go): the manifest holds the COPY's digest."""
    d = client.create_blob(gguf)
    statuses = [s.status for s in client.create("tiny", files={"m.gguf": d}, template="{{ .Prompt }}",
                                                 parameters={"stop": ["<|im_end|>"]}, stream=True)]
    assert statuses[:4] == ["parsing GGUF", f"using existing layer {d}", "validating GGUF model",
                            "verifying conversion"]
    assert statuses[4].startswith("creating new layer sha256:")
    assert statuses[-2:] == ["writing manifest", "success"]
    stored = layer(fake_ollama, "tiny", "model")["digest"]
    assert stored != d  # gguf-py's bytes are not llama-quantize's
    copied = fake_ollama.store.blob(stored)  # the COPY of a COPY is the same file: it keeps its digest
    d2 = client.create_blob(copied)
    assert d2 == stored
    list(client.create("tiny", files={"m.gguf": d2}, template="{{ .Prompt }}", stream=True))
    assert layer(fake_ollama, "tiny", "model")["digest"] == d2
    manifest = fake_ollama.manifest("tiny")
    assert manifest["schemaVersion"] == 2
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert [m.model for m in client.list().models] == ["tiny:latest"]


def test_create_of_a_file_llama_quantize_cannot_load_fails_inside_the_stream(client, tmp_path, llama_bin):
    d = client.create_blob(tiny_gguf.write(tmp_path / "t.gguf"))
    with pytest.raises(ollama.ResponseError) as e:
        list(client.create("t", files={"t.gguf": d}, stream=True))
    assert e.value.status_code == -1
    assert e.value.error.startswith("failed to validate GGUF with llama-quantize without compatibility patches")


def test_create_errors_before_and_inside_the_stream(client, gguf):
    d = client.create_blob(gguf)
    with pytest.raises(ollama.ResponseError) as e:
        client.create("bad name", files={"m.gguf": d})
    assert (e.value.status_code, e.value.error) == (400, "invalid model name")
    with pytest.raises(ollama.ResponseError) as e:
        client.create("x", files={"../m.gguf": d})
    assert e.value.status_code == 400 and "file path must be relative" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        list(client.create("x", files={"m.gguf": "sha256:" + "1" * 64}, stream=True))
    assert e.value.status_code == -1 and "no such file or directory" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:  # the same error without streaming is a status
        client.create("x", files={"m.gguf": "sha256:" + "1" * 64}, stream=False)
    assert e.value.status_code == 500
    with pytest.raises(ollama.ResponseError) as e:
        client.create("x")
    assert (e.value.status_code, e.value.error) == (400, "neither 'from' or 'files' was specified")


def test_show_prints_what_model_string_prints(client, gguf, fake_ollama):
    """GetModelInfo (server/routes.go), Model.String (server/images.go), quote (parser/parser.go)."""
    d = client.create_blob(gguf)
    client.create("tiny:q4", files={"m.gguf": d}, system="  padded  ",
                  parameters={"temperature": 0.5, "num_ctx": 1048576, "top_k": 64, "stop": ["<|im_end|>", "</s>"]})
    shown = client.show("tiny:q4")
    lines = shown.modelfile.splitlines()
    assert lines[:4] == ['# Modelfile generated by "ollama show"',
                         "# To build a new Modelfile based on this, replace FROM with:", "# FROM tiny:q4", ""]
    assert lines[4] == f"FROM {fake_ollama.store.blob(layer(fake_ollama, 'tiny:q4', 'model')['digest'])}"
    assert lines[5:7] == ["TEMPLATE {{ .Prompt }}", 'SYSTEM "  padded  "']  # no template: DefaultTemplate
    assert shown.template == "{{ .Prompt }}"
    params = lines[7:]
    assert sorted(params) == ["PARAMETER num_ctx 1.048576e+06", "PARAMETER stop </s>", "PARAMETER stop <|im_end|>",
                              "PARAMETER temperature 0.5", "PARAMETER top_k 64"]
    assert params.index("PARAMETER stop <|im_end|>") + 1 == params.index("PARAMETER stop </s>")
    assert sorted(shown.parameters.splitlines()) == sorted([
        f"{'num_ctx':<30} 1.048576e+06", f"{'stop':<30} \"<|im_end|>\"", f"{'stop':<30} \"</s>\"",
        f"{'temperature':<30} 0.5", f"{'top_k':<30} 64"])
    orders = {tuple(x.split()[1] for x in client.show("tiny:q4").modelfile.splitlines()[7:]) for _ in range(20)}
    assert len(orders) > 1  # m.Options is a Go map: PARAMETER order changes between calls
    with pytest.raises(ollama.ResponseError) as e:
        client.show("nothere")
    assert e.value.status_code == 404


def test_gemma4_gets_ollamas_renderer_parser_and_stop(client, tmp_path, fake_ollama, llama_bin):
    """createModel (server/create.go): architecture gemma4 -> renderer/parser gemma4, stop <turn|>."""
    g4 = tmp_path / "g4.gguf"
    write_model(g4, SynthSpec(arch="gemma4", n_layer=2, hidden=256, ffn=512, ple=16))
    d = client.create_blob(g4)
    client.create("g4", files={"g4.gguf": d}, parameters={"temperature": 1})
    lines = client.show("g4").modelfile.splitlines()
    assert lines[5:8] == ["TEMPLATE {{ .Prompt }}", "RENDERER gemma4", "PARSER gemma4"]
    assert sorted(lines[8:]) == ["PARAMETER stop <turn|>", "PARAMETER temperature 1"]
    client.create("g4", files={"g4.gguf": d}, parameters={"stop": ["<eos>"]})  # a stop sent is kept
    assert [x for x in client.show("g4").modelfile.splitlines() if x.startswith("PARAMETER")] == [
        "PARAMETER stop <eos>"]


def test_renderer_parser_and_requires_from_a_direct_post(client, gguf, fake_ollama):
    """CreateHandler copies renderer, parser and requires into the config (the client has no fields for them)."""
    d = client.create_blob(gguf)
    r = client._client.post("/api/create", json={"model": "r", "files": {"m.gguf": d}, "renderer": "qwen3.5",
                                                 "parser": "qwen3.5", "requires": "0.17.0", "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}
    shown = client._client.post("/api/show", json={"model": "r"}).json()
    assert shown["requires"] == "0.17.0"
    assert "RENDERER qwen3.5\nPARSER qwen3.5\n" in shown["modelfile"]


def test_an_existing_name_keeps_its_case(client, gguf, fake_ollama):
    """getExistingName (server/routes.go): a create under TINY:Q4 updates tiny:q4."""
    d = client.create_blob(gguf)
    client.create("tiny:q4", files={"m.gguf": d})
    client.create("TINY:Q4", files={"m.gguf": d}, system="new")
    assert [m.model for m in client.list().models] == ["tiny:q4"]
    assert client.show("Tiny:Q4").modelfile.splitlines()[2] == "# FROM tiny:q4"


def test_copy_delete_and_push(client, gguf, fake_ollama):
    d = client.create_blob(gguf)
    client.create("tiny:q4", files={"m.gguf": d})
    client.copy("tiny:q4", "lab/tiny:q4")
    with pytest.raises(ollama.ResponseError) as e:
        client.copy("tiny:q4", "lab/ti ny")
    assert e.value.status_code == 400
    assert sorted(m.model for m in client.list().models) == ["lab/tiny:q4", "tiny:q4"]
    assert [s.status for s in client.push("lab/tiny:q4", stream=True)][-2:] == ["pushing manifest", "success"]
    with pytest.raises(ollama.ResponseError) as e:
        list(client.push("tiny:q4", stream=True))  # the library namespace is never yours
    assert (e.value.status_code, e.value.error) == (-1, "unauthorized: access denied")  # server/images.go
    client.delete("lab/tiny:q4")
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("lab/tiny:q4")
    assert e.value.status_code == 404
