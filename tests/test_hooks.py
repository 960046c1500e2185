"""Every hook in hookspecs.py, used by a real third-party plugin: the example docs/plugins.md shows for it.

Each test installs the documented plugin module as a small distribution (a
dist-info with an entry point in the ``gl`` group), exactly what ``pip
install`` leaves behind, on a folder this process has on sys.path, then runs
``gl`` and shows that the host found it through pluggy and used what it
registered. test_docs.py checks that every hook has such a test;
test_predict_plugin.py and test_docs.py install a real package with pip.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import install_dist
from gl_plugins.facts import load_facts
from synth import write_model
from imatrix_files import forward_pass_entries, write_gguf_imatrix
from plugin_docs import hook_example


def install(site: Path, dist: str, hook: str) -> None:
    """A distribution named ``dist`` whose module is the documented example plugin for ``hook``."""
    install_dist(site, dist, dist.replace("-", "_"), hook_example(hook), version="0.1.0")


@pytest.fixture
def site(plugin_site):
    return plugin_site


@pytest.fixture
def run_gl(gl, monkeypatch):
    """``gl ARGS`` in this process, with what the site holds installed: (exit code, stdout, stderr)."""
    def run(site, *args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code, out, err = gl(*args)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


@pytest.fixture
def tiny(tmp_path):
    return write_model(tmp_path / "tiny.gguf", n_layer=4, hidden=256, ffn=512)[0]


def hooks_of(run_gl, site: Path, dist: str) -> list[str]:
    r = run_gl(site, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    return {p["name"]: p for p in json.loads(r.stdout)}[dist]["hooks"]


def test_hook_gl_register_predictors(site, run_gl, tiny):
    install(site, "gl-shallow-model", "gl_register_predictors")
    assert hooks_of(run_gl, site, "gl-shallow-model") == ["gl_register_predictors"]
    r = run_gl(site, "predict", tiny, "--quant", "Q8_0", "--json")
    assert r.returncode == 0, r.stderr
    preds = {p["predictor"]: p for p in json.loads(r.stdout)}
    assert preds["shallow-model"]["verdict"] == "risky" and preds["shallow-model"]["reasons"] == ["only 4 layers"]
    assert preds["combined"]["verdict"] == "risky"
    assert "risky according to shallow-model" in preds["combined"]["reasons"][1]


def test_hook_gl_register_recipes(site, run_gl, tiny):
    install(site, "gl-ffn-low", "gl_register_recipes")
    r = run_gl(site, "plan", "--recipe", "ffn-low", "--help")
    assert r.returncode == 0 and "--ffn-type" in r.stdout and "Type of the FFN." in r.stdout
    r = run_gl(site, "plan", tiny, "--recipe", "ffn-low", "--ffn-type", "Q5_0", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    types = {t["name"]: t["type"] for t in doc["tensors"]}
    assert {types[f"blk.{i}.{w}.weight"] for i in range(4) for w in ("ffn_gate", "ffn_up", "ffn_down")} == {"Q5_0"}
    assert types["blk.0.attn_q.weight"] == "Q8_0"
    assert doc["map"].strip() == r"ffn_(gate|up|down)\.weight=q5_0"


def test_hook_gl_register_auditors(site, run_gl, tiny, tmp_path):
    install(site, "gl-few-chunks", "gl_register_auditors")
    imx = tmp_path / "tiny.imatrix.gguf"
    write_gguf_imatrix(imx, forward_pass_entries(load_facts(tiny)), chunk_count=4)
    r = run_gl(site, "imatrix", "audit", tiny, "--imatrix", imx, "--quant", "Q4_K_M", "--json")
    assert r.returncode == 0, r.stderr  # a warning does not fail the audit
    found = [f for f in json.loads(r.stdout)["findings"] if f["source"] == "few-chunks"]
    assert found == [{"severity": "warning", "code": "imatrix-few-chunks", "tensor": None,
                      "message": "computed on 4 chunks; 100 or more are steadier",
                      "hint": "run llama-imatrix on more text", "evidence": "", "source": "few-chunks",
                      "file": str(imx)}]


def test_hook_gl_register_commands(site, run_gl, tiny):
    install(site, "gl-count", "gl_register_commands")
    r = run_gl(site, "--help")
    assert r.returncode == 0 and "count-tensors" in r.stdout and "Count a model's tensors by type." in r.stdout
    r = run_gl(site, "count-tensors", tiny)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["F16 29", "F32 9"]


def test_hook_gl_register_validators(site, run_gl, tiny):
    install(site, "gl-wide-embeddings", "gl_register_validators")
    r = run_gl(site, "validate", tiny, "--only", "structure,wide-embeddings", "--json")
    assert r.returncode == 0, r.stderr  # a warning does not fail the file
    doc = json.loads(r.stdout)
    assert doc["validators"] == ["structure", "wide-embeddings"] and doc["passed"]
    (mine,) = [f for f in doc["findings"] if f["validator"] == "wide-embeddings"]
    assert (mine["severity"], mine["code"], mine["tensor"]) == ("warning", "embeddings-unquantized",
                                                                 "token_embd.weight")
    assert mine["message"].startswith("token_embd.weight is F16: 0.2 MiB, ")
    assert doc["figures"]["embedding_share"] > 0
    r = run_gl(site, "validate", tiny, "--only", "wide-embeddings")
    assert "wide-embeddings  warn" in r.stdout


def test_hook_gl_register_publishers(site, run_gl, tmp_path, llama_bin):
    import hashlib

    from tiny_gguf import GEMMA_TEMPLATE, GEMMA_TOKENS, write

    install(site, "gl-manifest", "gl_register_publishers")
    repo = tmp_path / "repo"
    repo.mkdir()
    write(repo / "tiny.gguf", arch="gemma3", tokens=GEMMA_TOKENS, chat_template=GEMMA_TEMPLATE)
    (repo / "gl.toml").write_text('[models.tiny]\nfamily = "gemma3"\n\n[models.tiny.variants.f32]\n'
                                  'gguf = "tiny.gguf"\n')
    # the tiny file does not run in llama.cpp, so validation reports errors: --force publishes all the same
    r = run_gl(site, "publish", "tiny:f32", "--to", "manifest:release", "--force", "--dry-run", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "publisher: manifest (--to manifest:release)" in r.stderr and not (repo / "release").exists()
    r = run_gl(site, "publish", "tiny:f32", "--to", "manifest:release", "--force", cwd=repo)
    assert r.returncode == 0, r.stderr
    out = repo / "release" / "tiny-f32.json"
    assert r.stdout.splitlines() == [f"wrote {Path('release') / 'tiny-f32.json'}",
                                     "tiny:f32 published via manifest (release/tiny-f32.json)"]
    doc = json.loads(out.read_text())
    assert doc["sha256"] == hashlib.sha256((repo / "tiny.gguf").read_bytes()).hexdigest()
    assert doc["create"]["files"] == {"tiny.gguf": f"sha256:{doc['sha256']}"}
    assert "<end_of_turn>" in doc["create"]["parameters"]["stop"]
    # without a target the publisher says why it cannot publish, and gl exits 2 with that sentence
    r = run_gl(site, "publish", "tiny:f32", "--to", "manifest", "--force", cwd=repo)
    assert r.returncode == 2 and "publisher manifest cannot publish: give the folder as --to manifest:DIR" in r.stderr
