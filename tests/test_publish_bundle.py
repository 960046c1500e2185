"""The bundle publisher: an offline folder that `ollama create -f Modelfile` turns into the model."""

from __future__ import annotations

import json
import os
import subprocess

import ollama
import pytest

from gl_plugins.modelfile import parse as mfmod
from gl_plugins.publish.bundle import BundlePublisher
from gl_plugins.publish.ollama import OllamaPublisher
from publish_support import (closed_port_url, fake_ollama, private_caches, request_for,  # noqa: F401
                             write_config, written_by_llama_quantize)

CONFIG = """
[models.tiny]
system = "Be brief."
license = "MIT"

[models.tiny.variants.q4]
gguf = "tiny.gguf"
parameters = { temperature = 0.7 }
messages = [ { role = "user", content = "hi" }, { role = "assistant", content = "hello" } ]
"""


@pytest.fixture
def project(tmp_path, llama_bin):
    written_by_llama_quantize(tmp_path / "tiny.gguf")  # one the server's create-time COPY gives back unchanged
    return write_config(tmp_path, CONFIG)


def bundle(project, target):
    req = request_for(project, "tiny:q4", closed_port_url())
    req.options.target = str(target)
    return BundlePublisher().publish(req), req


def test_bundle_holds_a_linked_gguf_a_relative_modelfile_the_request_and_sums(project, tmp_path):
    out = tmp_path / "out" / "tiny-q4"
    result, req = bundle(project, out)
    assert sorted(os.listdir(out)) == ["Modelfile", "SHA256SUMS", "create-request.json", "tiny.gguf"]
    assert os.path.samefile(out / "tiny.gguf", project.parent / "tiny.gguf")  # hard link
    assert "hard-linked tiny.gguf" in result.actions
    m = mfmod.parse_file(out / "Modelfile")
    assert m.from_ == "./tiny.gguf"
    assert m.system == "Be brief." and m.licenses == ["MIT"] and len(m.messages) == 2
    body = json.loads((out / "create-request.json").read_text())
    assert body == {**req.create, "files": {"tiny.gguf": f"sha256:{req.digest}"}}
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 3


def test_publishing_the_bundle_twice_changes_nothing(project, tmp_path):
    out = tmp_path / "b"
    bundle(project, out)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    result, _ = bundle(project, out)
    assert result.unchanged and result.actions[0].endswith("is up to date; nothing changed")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before


def test_ollama_create_inside_the_bundle_makes_the_same_model(project, tmp_path, fake_ollama):
    """Do what `ollama create tiny:q4 -f Modelfile` does in the bundle folder, with the official client."""
    out = tmp_path / "b"
    _, req = bundle(project, out)
    client = ollama.Client(host=fake_ollama.url)
    m = mfmod.parse_file(out / "Modelfile")
    body = mfmod.create_request(m, out, lambda p: client.create_blob(p))
    assert body == {k: v for k, v in json.loads((out / "create-request.json").read_text()).items() if k != "model"}
    list(client.create("tiny:q4", stream=True, **{("from_" if k == "from" else k): v for k, v in body.items()}))
    shown = client.show("tiny:q4")
    assert f"sha256-{req.digest}" in shown.modelfile
    # and gl, publishing the same variant to that server afterwards, finds nothing to do
    req2 = request_for(project, "tiny:q4", fake_ollama.url)
    result = OllamaPublisher().publish(req2)
    assert result.unchanged and result.uploaded_bytes == 0


def test_bundle_copies_when_a_hard_link_is_impossible(project, tmp_path, monkeypatch):
    import errno

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "c"
    result, _ = bundle(project, out)
    assert "copied tiny.gguf" in result.actions
    assert not os.path.samefile(out / "tiny.gguf", project.parent / "tiny.gguf")
    assert (out / "tiny.gguf").read_bytes() == (project.parent / "tiny.gguf").read_bytes()
