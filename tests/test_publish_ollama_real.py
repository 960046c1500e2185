"""Opt-in: publish the real Gemma 3 270M to a real Ollama server (runs only when OLLAMA_HOST is set)."""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = [pytest.mark.ollama_real,
              pytest.mark.skipif(not os.environ.get("OLLAMA_HOST"), reason="set OLLAMA_HOST to a real Ollama server")]


def test_publish_to_a_real_server_creates_a_model_that_answers_and_stops(tmp_path, gemma_q4):
    import ollama

    from gl_plugins.project.config import load_config
    from gl_plugins.publish.prepare import build_request, options_from
    from gl_plugins.publish.ollama import OllamaPublisher

    (tmp_path / "model.gguf").symlink_to(gemma_q4)
    tag = f"t{uuid.uuid4().hex[:8]}"
    (tmp_path / "gl.toml").write_text(f'[models.gl-test-gemma3]\n[models.gl-test-gemma3.variants.{tag}]\n'
                                      f'gguf = "model.gguf"\nparameters = {{ num_predict = 64 }}\n')
    cfg = load_config(tmp_path / "gl.toml")
    variant = cfg.variant(f"gl-test-gemma3:{tag}")
    lines: list[str] = []
    req = build_request(cfg, variant, options_from(cfg.publish, progress=False), echo=lines.append)
    client = ollama.Client()
    try:
        first = OllamaPublisher().publish(req)
        assert first.created
        again = OllamaPublisher().publish(build_request(cfg, variant, options_from(cfg.publish, progress=False),
                                                        echo=lines.append))
        assert again.unchanged and again.uploaded_bytes == 0
        reply = client.chat(variant.name, messages=[{"role": "user", "content": "Say hello in three words."}])
        assert reply.message.content.strip()
        assert reply.done_reason == "stop"
    finally:
        try:
            client.delete(variant.name)
        except ollama.ResponseError:
            pass
