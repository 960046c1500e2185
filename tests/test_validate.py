"""gl validate on the real Gemma 3 270M: a sensible quantization passes, broken ones are caught with evidence.

Story: the user quantizes the F16 base with gl quantize (which leaves the
plan and the source in OUT.gl.json), then runs gl validate OUT before
publishing. A Q4_K-class file passes every validator; a file with the
lowest types everywhere (embeddings and output included) fails generation
and perplexity with the text it produced; a file made with another map
fails plan-match; a file cut short by a few bytes fails structure with the
position; NaN in the data and a misleading file-type label are found.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from gl_plugins.model.gguf_header import read_header
from gl_plugins.plan.resolve import stock_plan
from gl_plugins.plan.sources import plan_from_map, plan_from_recipe
from gl_plugins.quantize.run import quantize

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """llama.cpp on one thread: on this shared 2-core machine two threads mostly wait on each other."""
    monkeypatch.setenv("GL_THREADS", "1")


VALIDATORS = ["structure", "plan-match", "bpw", "loads", "generation", "perplexity", "kld"]
QUIET = dict(progress=False, echo=lambda m: None)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("validate")


@pytest.fixture(scope="module")
def sensible(work, gemma_f16):
    """Stock Q4_K_M from the F16 base, with its provenance."""
    return quantize(gemma_f16, work / "gemma-q4_k_m.gguf", stock_plan("Q4_K_M"), **QUIET).output


@pytest.fixture(scope="module")
def destroyed(work, gemma_f16):
    """Q1_0 (1.1 bits) on every quantizable tensor, the token embeddings (= the tied output) included."""
    from gl_plugins.facts import facts_from_gguf

    plan = plan_from_recipe(facts_from_gguf(gemma_f16), "uniform", {"type": "Q1_0"})
    return quantize(gemma_f16, work / "gemma-q1_0.gguf", plan, **QUIET).output


@pytest.fixture(scope="module")
def mapped(work, gemma_f16):
    """A file made with a hand-written map: ffn_down at Q4_K over Q8_0."""
    mp = work / "map-a.txt"
    mp.write_text("ffn_down=q4_k\n")
    out = quantize(gemma_f16, work / "gemma-map-a.gguf", plan_from_map(mp, "Q8_0"), **QUIET).output
    return out, mp


def _findings(doc, validator):
    return [f for f in doc["findings"] if f["validator"] == validator]


def _json(gl, *args):
    code, out, err = gl("validate", *args, "--json")
    assert code in (0, 1), err
    doc = json.loads(out)
    assert code == (0 if doc["passed"] else 1)
    return code, doc


# ---------------------------------------------------------------- the whole story

def test_sensible_q4_plan_passes_every_validator(gl, sensible, gemma_f16):
    code, doc = _json(gl, sensible)
    assert code == 0 and doc["passed"] is True
    assert doc["validators"] == VALIDATORS
    for name in VALIDATORS:
        mine = _findings(doc, name)
        assert mine, f"{name} reported nothing"
        assert not [f for f in mine if f["severity"] == "error" or f["code"] == "validator-skipped"], mine
    codes = {f["code"] for f in doc["findings"]}
    assert {"structure-ok", "plan-match-ok", "bpw-measured", "loads-ok", "perplexity-ok", "kld-ok"} <= codes
    # KL divergence against the base: a stock Q4_K_M of Gemma 3 270M measured 0.0049 here (docs/validate.md)
    kld = doc["kld"]
    assert set(kld) == {"mean", "median", "p99", "p999", "max", "same_top_p", "rms_dp", "ppl_ratio"}
    assert 0 < kld["mean"] < 0.05 and kld["median"] <= kld["p99"] <= kld["p999"] <= kld["max"]
    assert 0.9 < kld["same_top_p"] <= 1  # a fraction, not a percentage
    assert doc["figures"]["kld"] == kld
    (ok,) = [f for f in _findings(doc, "kld") if f["code"] == "kld-ok"]
    assert "mean KLD" in ok["message"] and " ± " in ok["message"] and "4 x 512 tokens" in ok["message"]
    assert doc["bpw"] == pytest.approx(7.358, abs=0.005)  # what llama-quantize reported for this plan
    assert doc["figures"]["predicted_bpw"] == pytest.approx(doc["bpw"], abs=0.001)
    # the base came from the provenance; its perplexity and the ratio are in the report
    assert 5 < doc["base_perplexity"] < 50
    assert doc["perplexity"] / doc["base_perplexity"] < 1.15
    assert doc["figures"]["perplexity_ratio"] == pytest.approx(doc["perplexity"] / doc["base_perplexity"], abs=1e-3)
    for f in doc["findings"]:
        assert set(f) >= {"validator", "severity", "code", "message", "evidence"}


def test_destroyed_model_fails_generation_and_perplexity_with_evidence(gl, destroyed, gemma_f16):
    code, doc = _json(gl, destroyed)
    assert code == 1 and doc["passed"] is False
    assert doc["bpw"] < 1.2  # Q1_0 everywhere: 1.13 bits per weight
    # the file itself is sound: it parses, matches its plan, and llama.cpp runs it
    for name in ("structure", "plan-match", "loads"):
        assert not [f for f in _findings(doc, name) if f["severity"] == "error"], name
    collapses = [f for f in _findings(doc, "generation") if f["code"] == "generation-collapse"]
    assert len(collapses) >= 4
    for f in collapses:
        assert f["severity"] == "error"
        assert f["evidence"].startswith("prompt: ") and "\noutput: " in f["evidence"]
        assert "\nbase:   " in f["evidence"]  # what the base model wrote for the same prompt
    assert any("tokens are words" in f["message"] for f in collapses)
    (ppl,) = [f for f in _findings(doc, "perplexity") if f["severity"] == "error"]
    assert ppl["code"] == "perplexity-ratio" and "above the limit 1.5" in ppl["message"]
    assert doc["perplexity"] > 100 * doc["base_perplexity"]
    assert ppl["evidence"].splitlines()[0] == "chunk  quant     base"
    # and the KL divergence says so too: every gate of the kld validator is broken
    (kld,) = [f for f in _findings(doc, "kld") if f["severity"] == "error"]
    assert kld["code"] == "kld-limit"
    assert "mean KLD" in kld["message"] and "p99 KLD" in kld["message"] and "top token" in kld["message"]
    assert doc["kld"]["mean"] > 5 and doc["kld"]["same_top_p"] < 0.2


def test_plan_mismatch_fails_plan_match(gl, mapped, work):
    out, map_a = mapped
    map_b = work / "map-b.txt"
    map_b.write_text("ffn_down=q6_k\n")
    code, stdout, stderr = gl("validate", out, "--plan", map_b, "--only", "plan-match")
    assert code == 1, stderr
    assert stdout.splitlines()[0] == "plan-match  FAIL"
    assert ("  error: plan-mismatch [blk.0.ffn_down.weight]: is Q4_K, the plan gives Q6_K (rule 1: ffn_down)"
            in stdout.splitlines())
    assert f"18 of 18 planned tensors have another type (plan: map {map_b})" in stdout
    assert stdout.strip().splitlines()[-1].startswith(f"{out}: FAILED: ")

    code, stdout, _ = gl("validate", out, "--plan", map_a, "--only", "plan-match")
    assert code == 0 and "all 18 tensors its rules name have the planned type" in stdout
    # without --plan, the provenance gl quantize wrote is the plan: every tensor is checked
    code, stdout, _ = gl("validate", out, "--only", "plan-match")
    assert code == 0 and "all 236 tensors have the planned type (plan: provenance" in stdout


def test_truncated_file_fails_structure_with_the_position(gl, sensible, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(sensible, "rb") as src, open(cut, "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.truncate(sensible.stat().st_size - 5)
    code, stdout, stderr = gl("validate", cut)
    assert code == 1 and "Traceback" not in stderr + stdout
    lines = stdout.splitlines()
    assert lines[0] == "structure   FAIL"
    assert lines[1].startswith(f"  error: structure-unreadable: {cut} (at byte ")
    assert "lies beyond the end of the file; the file is truncated or corrupt" in lines[1]
    for name in VALIDATORS[1:]:
        assert any(ln.startswith(f"{name}") and ln.endswith("skipped") for ln in lines), name
    assert lines[-1].startswith(f"{cut}: FAILED: 1 error")


def test_nan_in_a_norm_and_in_a_block_scale_fails_structure(gl, sensible, tmp_path):
    bad = tmp_path / "nan.gguf"
    shutil.copyfile(sensible, bad)
    h = read_header(bad)
    by = {t.name: t for t in h.tensors}
    norm, embd = by["output_norm.weight"], by["token_embd.weight"]
    assert (norm.type_name, embd.type_name) == ("F32", "Q8_0")
    with open(bad, "r+b") as f:
        f.seek(h.data_offsets[0] + norm.offset + 3 * 4)
        f.write(struct.pack("<f", float("nan")))
        f.seek(h.data_offsets[0] + embd.offset + 5 * 34)  # the fp16 scale of the sixth Q8_0 block
        f.write(struct.pack("<H", 0x7C00))  # +Inf
    code, stdout, _ = gl("validate", bad, "--only", "structure")
    assert code == 1
    assert "  error: structure-non-finite [output_norm.weight]: 1 of 640 values are NaN or Inf" in stdout
    assert "  error: structure-non-finite [token_embd.weight]: 1 of 5242880 block scales are NaN or Inf" in stdout


def test_mislabelled_file_type_is_a_warning(gl, gemma_f16, tmp_path):
    mp = tmp_path / "all-q8.txt"
    mp.write_text("blk=q8_0\n")  # every block weight at Q8_0, under a Q4_K_M label
    out = quantize(gemma_f16, tmp_path / "label.gguf", plan_from_map(mp, "Q4_K_M"), **QUIET).output
    code, stdout, _ = gl("validate", out, "--only", "structure")
    assert code == 0  # a warning: the file works, its label misleads
    assert ("  warning: structure-file-type-mismatch: general.file_type says Q4_K_M, but only 0% of the block "
            "weights are of that type or its row-width fallbacks; the most are Q8_0 (100%)") in stdout


# ---------------------------------------------------------------- settings and bad input

def test_bpw_target_and_thresholds_are_settings(gl, sensible):
    code, stdout, _ = gl("validate", sensible, "--only", "bpw", "--target-bpw", "4")
    assert code == 1
    assert "error: bpw-over-target: the file holds 7.358 bits per weight, the target was 4 (tolerance 0.1)" in stdout
    assert "the plan asked for Q4_K on 32% of the parameters, but only 9% are Q4_K; the rest are Q5_0 (24%)" in stdout

    code, doc = _json(gl, sensible, "--only", "perplexity", "--set", "perplexity.max_ratio=1.0001")
    assert code == 1
    (f,) = _findings(doc, "perplexity")
    assert f["code"] == "perplexity-ratio" and "above the limit 1.0001" in f["message"]


@pytest.mark.parametrize("args, message", [
    (("--only", "nope"), "unknown validator 'nope'; known: structure, plan-match, bpw, loads, generation, perplexity"),
    (("--set", "perplexity.nope=1"), "validator perplexity has no setting 'nope'; its settings: ctx, chunks"),
    (("--set", "bpw.tolerance=lots"), "setting 'bpw.tolerance=lots': 'lots' is not a float"),
    (("--set", "tolerance"), "must look like VALIDATOR.KEY=VALUE"),
])
def test_bad_options_are_one_sentence_and_exit_2(gl, sensible, args, message):
    code, stdout, stderr = gl("validate", sensible, *args)
    assert code == 2 and message in stderr and "Traceback" not in stderr, stderr


def test_missing_quant_and_missing_base_name_the_file(gl, sensible, tmp_path):
    code, _, stderr = gl("validate", tmp_path / "nope.gguf")
    assert code == 2 and stderr.strip() == f"gl: error: {tmp_path / 'nope.gguf'}: file not found"
    code, _, stderr = gl("validate", sensible, "--base", tmp_path / "base.gguf")
    assert code == 2 and stderr.strip() == f"gl: error: {tmp_path / 'base.gguf'}: base model not found"


def test_a_crashing_validator_plugin_fails_the_file(sensible):
    from gl_plugins import host
    from gl_plugins.hookspecs import hookimpl
    from gl_plugins.validate.run import validate_file

    class Boom:
        name = "boom"
        description = "raises"

        def validate(self, context):
            raise ZeroDivisionError("division by zero")

    class Plugin:
        @hookimpl
        def gl_register_validators(self, register):
            register(Boom())

    host.reset()
    try:
        host.get_manager().register(Plugin(), name="boom-plugin")
        report = validate_file(sensible, only=["structure", "boom"])
    finally:
        host.reset()
    assert report.validators == ["structure", "boom"] and report.passed is False
    (f,) = [f for f in report.findings if f.source == "boom"]
    assert (f.severity, f.code) == ("error", "validator-failed")
    assert "boom-plugin" in f.message and "ZeroDivisionError: division by zero" in f.message


def test_plan_json_is_a_plan_too(gl, sensible, tmp_path):
    from gl_plugins.plan.resolve import plan_to_dict

    right, wrong = tmp_path / "q4_k_m.json", tmp_path / "q8_0.json"
    right.write_text(json.dumps(plan_to_dict(stock_plan("Q4_K_M"))))
    wrong.write_text(json.dumps({"plan": plan_to_dict(stock_plan("Q8_0"))}))  # as `gl plan --json` nests it
    code, stdout, _ = gl("validate", sensible, "--plan", right, "--only", "plan-match")
    assert code == 0 and f"all 236 tensors have the planned type (plan: plan {right})" in stdout
    code, stdout, _ = gl("validate", sensible, "--plan", wrong, "--only", "plan-match")
    assert code == 1 and "  error: plan-mismatch [blk.0.ffn_down.weight]: is Q6_K, the plan gives Q8_0" in stdout


def test_a_provenance_of_another_file_is_ignored_with_a_warning(gl, sensible, mapped, tmp_path):
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(sensible, copy)
    shutil.copyfile(str(mapped[0]) + ".gl.json", str(copy) + ".gl.json")
    code, stdout, _ = gl("validate", copy, "--only", "plan-match")
    assert code == 0
    assert "  warning: provenance-stale: " in stdout and "it describes another file and is ignored" in stdout
    assert "plan-match  skipped" in stdout


def test_a_file_llama_cpp_cannot_run_fails_loads_with_its_error(gl, tmp_path, llama_bin):
    from tiny_gguf import write

    tiny = write(tmp_path / "tiny.gguf")  # a well-formed GGUF with one tensor: no model llama.cpp can build
    code, stdout, _ = gl("validate", tiny, "--only", "structure,loads")
    assert code == 1
    lines = stdout.splitlines()
    assert lines[0].split() == ["structure", "ok"] and ["loads", "FAIL"] in [ln.split() for ln in lines]
    (failed,) = [ln for ln in lines if "loads-failed" in ln]
    assert failed.startswith("  error: loads-failed: llama.cpp ")
    assert "cannot run the file: llama-completion failed (status 1): " in failed
    # llama.cpp logs from a thread and may exit before the reason is printed; when it is there, it is shown
    if "error loading model" in failed:
        assert failed.endswith("key not found in model: qwen2.context_length")


def test_tensors_that_differ_from_the_base_fail_structure(gl, sensible, tmp_path):
    from tiny_gguf import write

    tiny = write(tmp_path / "tiny.gguf")
    code, stdout, _ = gl("validate", tiny, "--base", sensible, "--only", "structure")
    assert code == 1
    assert "  error: structure-tensor-missing: 235 tensors of the base are missing: blk.0.attn_k.weight, " in stdout
    assert "  error: structure-shape [token_embd.weight]: shape [32, 64] differs from the base's [640, 262144]" in stdout


def test_a_base_that_cannot_generate_is_bad_input(gl, destroyed, tmp_path):
    from tiny_gguf import write

    tiny = write(tmp_path / "tiny.gguf")
    code, _, stderr = gl("validate", destroyed, "--base", tiny, "--only", "generation")
    assert code == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(
        f"gl: error: {tiny}: the base model cannot generate, so nothing can be compared with it: llama-completion failed")
