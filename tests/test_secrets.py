"""No credential given through the environment ever appears in what gl prints.

Story: the user has ``HF_TOKEN`` and ``OLLAMA_API_KEY`` set. Commands fail in
the ways servers fail: the hub cannot be reached, or answers 401/500; the
Ollama server answers 401 and 500 and quotes the request's Authorization
header in its error body. gl still says what went wrong, but the tokens are
nowhere in stdout or stderr, in text or JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gl_plugins.redaction import redact
from publish_support import closed_port_url, fake_ollama, write_config, written_by_llama_quantize  # noqa: F401

SECRETS = {
    "OLLAMA_API_KEY": "olk-0123456789-abcdefSECRET",
    "HF_TOKEN": "hfsecret-9876543210-TOKEN",
    "HUGGING_FACE_HUB_TOKEN": "hf_" + "Zq8" * 12,
}


def gl(*args, env=None, cwd=None):
    full = {**os.environ, **SECRETS, **(env or {})}
    for var in ("OLLAMA_HOST", "GL_PLUGINS"):
        full.pop(var, None)
    r = subprocess.run([sys.executable, "-m", "gl_plugins", *map(str, args)], capture_output=True, text=True,
                       env=full, cwd=cwd, timeout=600)
    for name, value in SECRETS.items():
        for part in (value, value[4:-4]):
            assert part not in r.stdout and part not in r.stderr, f"{name} leaked:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_redact_blanks_env_values_bearer_tokens_and_hf_shaped_tokens(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    text = (f"auth {SECRETS['OLLAMA_API_KEY']} / {SECRETS['HF_TOKEN']} / Authorization: Bearer abcdefgh12345678 / "
            f"hf_{'x' * 34}")
    assert redact(text) == ("auth <OLLAMA_API_KEY> / <HF_TOKEN> / Authorization: Bearer <redacted> / <HF token>")


# ---------------------------------------------------------------- Ollama

CONFIG = """
[publish]
retry_seconds = 1

[models.tiny.variants.q4]
gguf = "tiny.gguf"
"""


@pytest.fixture
def project(tmp_path, llama_bin):
    written_by_llama_quantize(tmp_path / "tiny.gguf")  # a model the server's create-time COPY can load
    return write_config(tmp_path, CONFIG)


@pytest.fixture
def caches(tmp_path):
    return {"GL_DIGEST_CACHE": str(tmp_path / "c" / "digests.json"),
            "GL_VALIDATION_CACHE": str(tmp_path / "c" / "validations")}


def test_a_401_quoting_the_key_is_reported_without_it(project, fake_ollama, caches):
    fake_ollama.faults.reject_status = 401
    fake_ollama.faults.echo_authorization = True
    r = gl("publish", "tiny:q4", "--config", project, "--to", "ollama", "--host", fake_ollama.url, env=caches)
    assert r.returncode == 2
    assert f"the server at {fake_ollama.url} answered 401 to /api/tags (unauthorized (request authorization: " \
           "Bearer <OLLAMA_API_KEY>))" in r.stderr
    assert fake_ollama.auth_headers == [f"Bearer {SECRETS['OLLAMA_API_KEY']}"]  # the key was really sent


def test_falling_back_to_a_bundle_says_why_without_the_key_in_text_or_json(project, fake_ollama, caches):
    fake_ollama.faults.reject_status = 401
    fake_ollama.faults.echo_authorization = True
    r = gl("publish", "tiny:q4", "--config", project, "--host", fake_ollama.url, "--dry-run", "--force", "--json",
           env=caches)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["publisher"] == "bundle" and "Bearer <OLLAMA_API_KEY>" in doc["reason"]


def test_500s_quoting_the_key_while_creating_are_reported_without_it(project, fake_ollama, caches):
    fake_ollama.faults.fail_create = 1000
    fake_ollama.faults.echo_authorization = True
    r = gl("publish", "tiny:q4", "--config", project, "--to", "ollama", "--host", fake_ollama.url, "--force",
           env=caches)
    assert r.returncode == 2
    assert "creating tiny:q4 failed (the server answered 500: fake fault" in r.stderr  # the retry lines
    assert "Bearer <OLLAMA_API_KEY>" in r.stderr and "gave up after retrying for 1 s" in r.stderr


def test_an_unreachable_ollama_server(project, caches):
    url = closed_port_url()
    r = gl("publish", "tiny:q4", "--config", project, "--to", "ollama", "--host", url, env=caches)
    assert r.returncode == 2 and f"no Ollama server answers at {url} (connection refused)" in r.stderr


# ---------------------------------------------------------------- Hugging Face hub

class _EchoingHub(BaseHTTPRequestHandler):
    """A hub that fails every request and quotes its Authorization header in the body."""

    status = 401

    def log_message(self, *args):
        pass

    def _answer(self):
        body = json.dumps({"error": f"denied for {self.headers.get('Authorization')}"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer


# on a 500 the hub client retries for seconds
@pytest.fixture(params=[401, pytest.param(500, marks=pytest.mark.slow)], ids=["401", "500"])
def hub(request):
    handler = type("Hub", (_EchoingHub,), {"status": request.param, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


def _hub_env(tmp_path, endpoint):
    return {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_ETAG_TIMEOUT": "5",
            "HF_HUB_DOWNLOAD_TIMEOUT": "5", "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_a_hub_answering_with_the_token_in_its_body(tmp_path, hub):
    endpoint, status = hub
    r = gl("predict", "hf:someorg/somemodel", "--quant", "Q2_K", "--json", env=_hub_env(tmp_path, endpoint))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith("gl: error: hf:someorg/somemodel: ")


@pytest.mark.slow
def test_an_unreachable_hub(tmp_path):
    r = gl("inspect", "hf:someorg/somemodel", env=_hub_env(tmp_path, closed_port_url()))
    assert r.returncode == 2
    assert "config.json is not in the local Hugging Face cache and the hub cannot be reached" in r.stderr
