"""Fixtures and helpers shared by the publish tests: the fake Ollama server, private caches, requests."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

import tiny_gguf
from ollama_fake import FakeOllama
from synth import SynthSpec, write_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gemma3-270m"


def copy_example(tmp_path: Path) -> Path:
    """examples/gemma3-270m as shipped, without anything built or published."""
    folder = tmp_path / "gemma3-270m"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("build", "dist"))
    return folder


@pytest.fixture
def project(tmp_path, gemma_q4):
    """The example, with its variant's GGUF already there (the real Gemma 3 270M Q4_K_M, hard-linked)."""
    folder = copy_example(tmp_path)
    (folder / "build").mkdir()
    os.link(gemma_q4, folder / "build" / "gemma3-270m-q4_k.gguf")
    return folder


@pytest.fixture
def fake_ollama(tmp_path, llama_bin):
    """A fresh fake Ollama server on 127.0.0.1 with a random port; pushes allowed to namespace lab.

    Its creates run the real llama-quantize COPY, as Ollama 0.30 and newer do."""
    with FakeOllama(tmp_path / "ollama-server", llama_bin / "llama-quantize", allowed_namespaces=("lab",)) as server:
        yield server


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    """Digest and validation caches of this test only; no Ollama host or key from the environment."""
    monkeypatch.setenv("GL_DIGEST_CACHE", str(tmp_path / "cache" / "digests.json"))
    monkeypatch.setenv("GL_VALIDATION_CACHE", str(tmp_path / "cache" / "validations"))
    for var in ("OLLAMA_HOST", "OLLAMA_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def closed_port_url() -> str:
    """The URL of a port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def write_config(folder: Path, body: str) -> Path:
    p = folder / "gl.toml"
    p.write_text(body)
    return p


def request_for(config: Path, name: str, host: str, *, push: bool = False, retry_seconds: float | None = None,
                echo=None):
    """A PublishRequest for a gl.toml variant, as gl publish prepares it (without validation): the
    ollama publisher's ``available()`` has asked the server for its version first."""
    from gl_plugins.project.config import load_config
    from gl_plugins.publish.ollama import OllamaPublisher
    from gl_plugins.publish.prepare import build_request, options_from

    cfg = load_config(config)
    assert cfg.problems == [], [p.message for p in cfg.problems]
    options = options_from(cfg.publish, host=host, push=push, progress=False)
    if retry_seconds is not None:
        options.retry_seconds = retry_seconds
    OllamaPublisher().available(options)
    lines = [] if echo is None else echo
    return build_request(cfg, cfg.variant(name), options, echo=lines.append)


def written_by_gguf_py(path, chat_template: str = tiny_gguf.CHATML_TEMPLATE, **kw):
    """A small llama GGUF (about 6 MB, F32) written by gguf-py, with a chat template (ChatML)."""
    spec = SynthSpec(n_layer=2, hidden=256, ffn=512, dtype="F32",
                     extra_kv={"tokenizer.chat_template": chat_template}, **kw)
    write_model(path, spec)
    return path


def written_by_llama_quantize(path, **kw):
    """The same model after llama-quantize's COPY: what Ollama's create gives back byte for byte."""
    raw = written_by_gguf_py(path.with_name("raw-" + path.name), **kw)
    from gl_plugins.toolchain.llamacpp import run_tool

    run_tool("llama-quantize", ["--allow-requantize", raw, path, "COPY"])
    raw.unlink()
    return path
