"""The test suite's Ollama stand-in answers the official client as FACTS.md documents Ollama does."""

from __future__ import annotations

import hashlib
import json

import ollama
import pytest

import tiny_gguf
from publish_support import fake_ollama, private_caches  # noqa: F401


@pytest.fixture
def client(fake_ollama):
    return ollama.Client(host=fake_ollama.url)


@pytest.fixture
def gguf(tmp_path):
    return tiny_gguf.write(tmp_path / "m.gguf")


def digest_of(path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_blob_status_codes(client, gguf):
    d = digest_of(gguf)
    assert client._client.head(f"/api/blobs/{d}").status_code == 404
    assert client._client.head("/api/blobs/sha256:xyz").status_code == 400
    assert client._client.post(f"/api/blobs/{d}", content=gguf.read_bytes()).status_code == 201
    assert client._client.head(f"/api/blobs/{d}").status_code == 200
    assert client._client.post(f"/api/blobs/{d}", content=gguf.read_bytes()).status_code == 200
    other = "sha256:" + "0" * 64
    r = client._client.post(f"/api/blobs/{other}", content=b"not these bytes")
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert client._client.head(f"/api/blobs/{other}").status_code == 404


def test_create_streams_statuses_and_writes_the_store(client, gguf, fake_ollama):
    d = client.create_blob(gguf)
    statuses = [s.status for s in client.create("tiny", files={"m.gguf": d}, template="{{ .Prompt }}",
                                                 parameters={"stop": ["<|im_end|>"]}, stream=True)]
    assert statuses[0] == "parsing GGUF" and statuses[1] == f"using existing layer {d}"
    assert statuses[2].startswith("creating new layer sha256:")
    assert statuses[-2:] == ["writing manifest", "success"]
    again = [s.status for s in client.create("tiny", files={"m.gguf": d}, template="{{ .Prompt }}",
                                              parameters={"stop": ["<|im_end|>"]}, stream=True)]
    assert again[2].startswith("using existing layer sha256:")
    manifest = json.loads((fake_ollama.store.root / "manifests" / "registry.ollama.ai" / "library" / "tiny"
                           / "latest").read_text())
    assert manifest["schemaVersion"] == 2
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert [x["mediaType"] for x in manifest["layers"]] == [
        "application/vnd.ollama.image.model", "application/vnd.ollama.image.template",
        "application/vnd.ollama.image.params"]
    assert [m.model for m in client.list().models] == ["tiny:latest"]


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


def test_show_copy_delete_and_push(client, gguf, fake_ollama):
    d = client.create_blob(gguf)
    client.create("tiny:q4", files={"m.gguf": d}, system="  padded  ", parameters={"temperature": 0.5})
    shown = client.show("tiny:q4")
    assert f"FROM {fake_ollama.store.blob(d)}" in shown.modelfile
    assert 'SYSTEM "  padded  "' in shown.modelfile and "PARAMETER temperature 0.5" in shown.modelfile
    with pytest.raises(ollama.ResponseError) as e:
        client.show("nothere")
    assert e.value.status_code == 404
    client.copy("tiny:q4", "lab/tiny:q4")
    with pytest.raises(ollama.ResponseError) as e:
        client.copy("tiny:q4", "lab/ti ny")
    assert e.value.status_code == 400
    assert sorted(m.model for m in client.list().models) == ["lab/tiny:q4", "tiny:q4"]
    assert [s.status for s in client.push("lab/tiny:q4", stream=True)][-2:] == ["pushing manifest", "success"]
    with pytest.raises(ollama.ResponseError, match="unauthorized"):
        list(client.push("tiny:q4", stream=True))  # the library namespace is never yours
    client.delete("lab/tiny:q4")
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("lab/tiny:q4")
    assert e.value.status_code == 404
