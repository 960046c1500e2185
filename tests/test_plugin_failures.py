"""A third-party plugin that raises while doing its work cannot break the host.

Story: the user installs a plugin package whose predictor, recipe, auditor,
validator and publisher all crash. Every command that runs them names the
plugin, its distribution and what failed; the built-in plugins' results still
appear; no traceback; the exit status says the run is incomplete.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from imatrix_files import forward_pass_entries, write_gguf_imatrix
from conftest import install_dist

BOOM = """
    from gl_plugins import hookimpl

    class Boom:
        name = "boom"
        description = "raises in its work"
        options = []

        def predict(self, facts, quant):
            raise RuntimeError("predictor exploded")

        def plan(self, facts, **options):
            raise RuntimeError("recipe exploded")

        def audit(self, imatrix, facts, assignments):
            yield from ()
            raise RuntimeError("auditor exploded while iterating")

        def validate(self, ctx):
            raise RuntimeError("validator exploded")

        def available(self, options):
            return None

        def publish(self, request):
            raise RuntimeError("publisher exploded")

    @hookimpl
    def gl_register_predictors(register):
        register(Boom())

    @hookimpl
    def gl_register_recipes(register):
        register(Boom())

    @hookimpl
    def gl_register_auditors(register):
        register(Boom())

    @hookimpl
    def gl_register_validators(register):
        register(Boom())

    @hookimpl
    def gl_register_publishers(register):
        register(Boom())
"""

WHO = "plugin 'gl-boom' (distribution gl-boom 1.2.3) failed in"


@pytest.fixture
def site(plugin_site):
    install_dist(plugin_site, "gl-boom", "gl_boom", BOOM)
    return plugin_site


@pytest.fixture
def run(gl, monkeypatch):
    """gl in this process, with gl-boom installed; no traceback, whatever the plugin does."""
    def run(*args, cwd=None, env=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code, out, err = gl(*args, env=env)
        assert "Traceback" not in err, err
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


def test_a_raising_predictor_is_named_and_the_others_still_answer(site, run, synthetic_model):
    r = run("predict", synthetic_model, "--quant", "Q2_K", "--json")
    assert r.returncode == 1
    assert "predictor 'boom' (plugin gl-boom) failed on Q2_K: RuntimeError: predictor exploded" in r.stderr
    rows = {p["predictor"]: p for p in json.loads(r.stdout)}
    assert rows["boom"]["verdict"] == "unknown" and "predictor exploded" in rows["boom"]["error"]
    assert {"ffn-ratio", "sliding-window", "kv-sharing", "shape-fallback", "combined"} <= set(rows)
    assert rows["ffn-ratio"]["verdict"] in ("ok", "risky", "fails", "unknown")


def test_a_raising_recipe_is_one_sentence_and_the_built_in_ones_still_work(site, run, synthetic_model):
    r = run("plan", synthetic_model, "--recipe", "boom")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == f"gl: error: {WHO} recipe 'boom'.plan: RuntimeError: recipe exploded\n"
    r = run("plan", synthetic_model, "--recipe", "uniform", "--type", "Q4_K")
    assert r.returncode == 0, r.stderr
    assert "llama-quantize" in r.stdout


def test_an_auditor_raising_while_iterating_leaves_the_coverage_audit_intact(site, run, synthetic_model, tmp_path):
    from gl_plugins.facts import load_facts

    facts = load_facts(synthetic_model)
    imx = write_gguf_imatrix(tmp_path / "i.gguf", forward_pass_entries(facts, skip=lambda n: "attn_k" in n))
    r = run("imatrix", "audit", synthetic_model, "--imatrix", imx, "--quant", "IQ2_XXS", "--json")
    assert r.returncode == 1
    assert f"{WHO} auditor 'boom'.audit: RuntimeError: auditor exploded while iterating" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["missing"] == ["blk.0.attn_k.weight", "blk.1.attn_k.weight"]
    assert any(f["source"] == "coverage" and f["severity"] == "error" for f in doc["findings"])
    # without the broken plugin the same audit fails only on its findings
    clean = run("imatrix", "audit", synthetic_model, "--imatrix", imx, "--quant", "Q4_K_M", env={"GL_PLUGINS": ""})
    r = run("imatrix", "audit", synthetic_model, "--imatrix", imx, "--quant", "Q4_K_M")
    assert (clean.returncode, r.returncode) == (0, 1)
    assert "gl: 1 plugin failure(s); the results above are incomplete" in r.stderr


def test_a_raising_recipe_in_gl_quantize_writes_nothing(site, run, synthetic_model, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    r = run("quantize", synthetic_model, folder / "q.gguf", "--recipe", "boom")
    assert r.returncode == 1
    assert f"gl: error: {WHO} recipe 'boom'.plan: RuntimeError: recipe exploded" in r.stderr
    assert list(folder.iterdir()) == []


def test_a_raising_validator_fails_the_file_and_the_built_in_validators_still_report(site, run, synthetic_model):
    r = run("validate", synthetic_model, "--only", "structure,boom", "--json")
    assert r.returncode == 1
    assert f"{WHO} validator 'boom'.validate: RuntimeError: validator exploded" in r.stderr
    doc = json.loads(r.stdout)
    by_validator = {f["validator"]: f for f in doc["findings"]}
    assert by_validator["boom"]["code"] == "validator-failed" and by_validator["boom"]["severity"] == "error"
    assert "structure" in doc["validators"] and doc["passed"] is False


def test_a_raising_publisher_is_named_and_nothing_is_published(site, run, tmp_path):
    import tiny_gguf

    tiny_gguf.write(tmp_path / "tiny.gguf")
    (tmp_path / "gl.toml").write_text('[models.tiny.variants.q4]\ngguf = "tiny.gguf"\n')
    caches = {"GL_DIGEST_CACHE": str(tmp_path / "c" / "d.json"), "GL_VALIDATION_CACHE": str(tmp_path / "c" / "v")}
    r = run("publish", "tiny:q4", "--to", "boom", "--force", cwd=tmp_path, env=caches)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == f"gl: error: {WHO} publisher 'boom'.publish: RuntimeError: publisher exploded"
    assert "published" not in r.stdout


def test_scoring_evidence_with_a_raising_predictor_scores_the_others(site, run):
    r = run("predict", "--evidence", "builtin:lab", "--json")
    assert r.returncode == 1
    assert "predictor 'boom' failed on evidence line 1: RuntimeError: predictor exploded" in r.stderr
    scores = {s["predictor"]: s for s in json.loads(r.stdout)["scores"]}
    assert scores["boom"]["errors"] == 5
    assert scores["ffn-ratio"]["right"] == 4  # FACTS.md: the band rule classifies 4 of the 5 observations
