"""gl predict: per-predictor verdicts with reasons, the combined verdict, JSON, exit status, bad input."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from gl_plugins.hookspecs import hookimpl
from model_configs import CONFIGS, write_config

BUILTINS = {"ffn-ratio", "sliding-window", "kv-sharing", "shape-fallback", "quant-error"}
RULE = "the most severe verdict any predictor gave wins"


def _by(doc, quant):
    return {e["predictor"]: e for e in doc if e["quant"] == quant}


def _predict_json(gl, model, *quants, extra=()):
    args = ["predict", model, "--json", *extra]
    for q in quants:
        args += ["--quant", q]
    code, out, err = gl(*args)
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------- the real model

def test_real_gemma3_270m_text(gl, gemma_q4):
    code, out, err = gl("predict", gemma_q4, "--quant", "Q2_K", "-q", "iq2_m")
    assert code == 0, err
    for name in BUILTINS | {"combined"}:
        assert re.search(rf"^  {name}\s+(ok|risky|fails|unknown)\s+confidence 0\.\d\d", out, re.M), name
    assert out.count("\n  combined ") == 2  # one per quant type
    assert RULE in out  # the combine rule is stated
    assert "FFN ratio 3.20× (2048/640) on all 18 layers, inside the band" in out
    assert "global attention at layers 5, 11, 17" in out
    assert "gives 6.88 bits per weight" in out and "90 by llama-quantize's shape fallback" in out
    assert "IQ2_M" in out and "IQ2_S→IQ4_NL" in out


def test_real_gemma3_270m_json(gl, gemma_q4):
    doc = _predict_json(gl, gemma_q4, "Q2_K", "Q8_0")
    for entry in doc:
        assert set(entry) - {"predicted_kld"} == {"predictor", "quant", "verdict", "confidence", "reasons"}
        assert 0.0 <= entry["confidence"] <= 1.0 and entry["reasons"]
    q2, q8 = _by(doc, "Q2_K"), _by(doc, "Q8_0")
    assert set(q2) == set(q8) == BUILTINS | {"combined"}
    assert sum(1 for e in doc if e["predictor"] == "combined") == 2
    assert q2["ffn-ratio"]["verdict"] == "fails"
    assert 0 < q2["ffn-ratio"]["confidence"] < 1  # measured, never certainty
    assert any("right 4 of 5" in r for r in q2["ffn-ratio"]["reasons"])
    assert q2["sliding-window"]["verdict"] == "risky"
    assert q2["kv-sharing"]["verdict"] == "ok"
    assert q2["shape-fallback"]["verdict"] == "risky"
    assert q2["combined"]["verdict"] == "fails"
    assert any(RULE in r for r in q2["combined"]["reasons"])
    assert q8["combined"]["verdict"] == "ok" and q8["shape-fallback"]["verdict"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["Q2_K", "Q4_K_M"])
def test_shape_fallback_matches_llama_quantize_dry_run(gl, gemma_q4, llama_bin, tmp_path, quant):
    """The bits per weight and fallback count gl predicts are what llama-quantize itself reports."""
    from gl_plugins.toolchain.llamacpp import run_tool

    r = run_tool("llama-quantize", ["--dry-run", "--allow-requantize", gemma_q4, tmp_path / "x.gguf", quant],
                 timeout=300)
    log = r.stdout + r.stderr
    real_bpw = float(re.search(r"quant size\s*=\s*[\d.]+ MiB \(([\d.]+) BPW\)", log).group(1))
    real_fallbacks = int(re.search(r"(\d+) of \d+ tensor\(s\) required fallback", log).group(1))
    code, out, err = gl("predict", gemma_q4, "-q", quant, "--json", "--explain")
    assert code == 0, err
    sf = _by(json.loads(out), quant)["shape-fallback"]
    assert abs(sf["evidence"]["bpw"] - real_bpw) < 0.01
    assert sf["evidence"]["fallbacks"] == real_fallbacks
    assert f"gives {real_bpw:.2f} bits per weight" in " ".join(sf["reasons"])


# ---------------------------------------------------------------- config.json for the FACTS.md models

# model -> expected ffn-ratio verdict at Q2_K (band 3.0-5.5), sliding-window verdict at Q2_K
TABLE = {
    "qwen2.5-7b": ("fails", "ok"),  # 5.29: inside the band, although the lab saw it work
    "mistral-small-2409": ("ok", "ok"),  # 2.67
    "mistral-7b-v0.3": ("fails", "ok"),  # 3.50, no sliding window
    "phi-4": ("fails", "ok"),  # 3.50, no sliding window
    "gemma3-270m": ("fails", "risky"),  # 3.20, window 512
    "gemma3n-e2b": ("fails", "risky"),  # 4.00
    "gemma4-e2b": ("fails", "risky"),  # 4.00 on layers 0-14, 8.00 on 15-34
    "gemma4-e4b": ("fails", "risky"),
    "qwen3-30b-a3b": ("unknown", "ok"),  # mixture of experts: the rule does not apply
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_configs_from_the_facts_table(gl, tmp_path, name):
    cfg = write_config(tmp_path / name, name)
    doc = _predict_json(gl, cfg, "Q2_K", "IQ2_M", "Q4_K_M")
    q2 = _by(doc, "Q2_K")
    ffn, swa = TABLE[name]
    assert q2["ffn-ratio"]["verdict"] == ffn
    assert q2["sliding-window"]["verdict"] == swa
    assert _by(doc, "Q4_K_M")["ffn-ratio"]["verdict"] in ("ok", "unknown")  # Q3_K and up is the minimum
    shared = name.startswith(("gemma3n", "gemma4"))
    assert _by(doc, "IQ2_M")["kv-sharing"]["verdict"] == ("fails" if shared else "ok")
    assert q2["kv-sharing"]["verdict"] == "ok"  # Q2_K needs no imatrix
    assert q2["shape-fallback"]["verdict"] in ("ok", "risky")
    assert any("derived from the config's widths" in r for r in q2["shape-fallback"]["reasons"])


def test_gemma4_e2b_is_judged_per_layer(gl, tmp_path):
    cfg = write_config(tmp_path / "g4", "gemma4-e2b")
    code, out, err = gl("predict", cfg, "-q", "Q2_K", "-q", "IQ2_M", "--json", "--explain")
    assert code == 0, err
    doc = json.loads(out)
    ffn = _by(doc, "Q2_K")["ffn-ratio"]
    text = " ".join(ffn["reasons"])
    assert "judged per layer" in text
    assert "4.00× (6144/1536) on layers 0–14, inside the band" in text
    assert "8.00× (12288/1536) on layers 15–34, above the band" in text
    assert "15 of 35 layers are inside the band" in text
    assert ffn["evidence"]["per_layer"] is True and ffn["evidence"]["layers_in_band"] == list(range(15))
    kv = _by(doc, "IQ2_M")["kv-sharing"]
    text = " ".join(kv["reasons"])
    assert "layers 15–34 reuse an earlier layer's KV cache" in text
    assert "Missing importance matrix for tensor blk.15.attn_k.weight" in text
    assert "gl imatrix audit" in text
    rule = kv["evidence"]["pin_rule"]
    assert rule.startswith(r"blk\.(15|16|") and rule.endswith(r"|34)\.attn_[kv]\.weight=q4_k")
    swa = " ".join(_by(doc, "Q2_K")["sliding-window"]["reasons"])
    assert "28 of 35 layers attend through a 512-token sliding window" in swa
    assert "global attention at layers 4, 9, 14, 19, 24, 29, 34" in swa


def test_config_estimate_is_close_to_the_real_file(gl, tmp_path, gemma_q4):
    """Shapes derived from the real config.json give the bpw the real GGUF gives."""
    cfg = write_config(tmp_path / "g3", "gemma3-270m", head_dim=256, tie_word_embeddings=True)
    derived = _by(_predict_json(gl, cfg, "Q2_K", extra=["--explain"]), "Q2_K")["shape-fallback"]
    real = _by(_predict_json(gl, gemma_q4, "Q2_K", extra=["--explain"]), "Q2_K")["shape-fallback"]
    assert derived["evidence"]["derived_shapes"] is True and real["evidence"]["derived_shapes"] is False
    assert abs(derived["evidence"]["bpw"] - real["evidence"]["bpw"]) < 0.02
    assert derived["evidence"]["fallbacks"] == real["evidence"]["fallbacks"] == 90
    assert derived["confidence"] < real["confidence"]


def test_config_without_ffn_fields_gives_unknown_with_reason(gl, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                             "num_attention_heads": 32, "vocab_size": 32000}))
    doc = _predict_json(gl, p, "Q2_K")
    q2 = _by(doc, "Q2_K")
    assert q2["ffn-ratio"]["verdict"] == "unknown"
    assert "intermediate_size" in q2["ffn-ratio"]["reasons"][0]
    assert q2["shape-fallback"]["verdict"] == "unknown" and "FFN width" in q2["shape-fallback"]["reasons"][0]
    assert q2["combined"]["verdict"] == "ok"  # from the predictors that could judge


def test_hf_repo_id_from_a_local_hub_cache(tmp_path, gl_proc):
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hf" / "hub" / "models--google--gemma-4-E2B"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps(CONFIGS["gemma4-e2b"]))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    r = gl_proc("predict", "hf:google/gemma-4-E2B", "-q", "IQ2_M", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = _by(json.loads(r.stdout), "IQ2_M")
    assert doc["kv-sharing"]["verdict"] == "fails" and doc["ffn-ratio"]["verdict"] == "fails"
    r = gl_proc("predict", "hf:google/not-in-cache", "-q", "Q2_K", env=env)
    assert r.returncode == 2 and "not in the local Hugging Face cache" in r.stderr
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- options and exit status

def test_fail_on(gl, tmp_path):
    phi = write_config(tmp_path / "phi", "phi-4")
    small = write_config(tmp_path / "small", "mistral-small-2409")
    code, out, err = gl("predict", phi, "-q", "Q2_K", "--fail-on", "fails")
    assert code == 1 and "--fail-on fails: the combined verdict for Q2_K is fails" in err
    assert "ffn-ratio" in out  # the report is still printed
    assert gl("predict", phi, "-q", "Q3_K_M", "--fail-on", "risky")[0] == 0
    assert gl("predict", small, "-q", "Q2_K", "--fail-on", "risky")[0] == 0
    assert gl("predict", phi, "-q", "Q2_K")[0] == 0  # without --fail-on: 0


def test_band_is_configurable(gl, tmp_path):
    qwen = write_config(tmp_path / "qwen", "qwen2.5-7b")
    assert _by(_predict_json(gl, qwen, "Q2_K"), "Q2_K")["ffn-ratio"]["verdict"] == "fails"
    narrow = _by(_predict_json(gl, qwen, "Q2_K", extra=["--band", "3.0-5.2"]), "Q2_K")["ffn-ratio"]
    assert narrow["verdict"] == "ok"
    assert any("band 3–5.2×" in r or "3–5.2×" in r for r in narrow["reasons"])
    code, _, err = gl("predict", qwen, "-q", "Q2_K", "--band", "5.5-3")
    assert code == 2 and "--band" in err


def test_explain_shows_descriptions_and_figures(gl, tmp_path):
    cfg = write_config(tmp_path / "m7", "mistral-7b-v0.3")
    code, out, err = gl("predict", cfg, "-q", "Q2_K", "--explain")
    assert code == 0, err
    assert "about: The lab's rule" in out
    assert 'band: [3.0, 5.5]' in out and "measured:" in out


def test_unknown_quant_type_lists_valid_names(gl, tmp_path):
    cfg = write_config(tmp_path / "m", "phi-4")
    code, out, err = gl("predict", cfg, "--quant", "Q2_XL")
    assert code == 2
    assert "unknown quant type 'Q2_XL'" in err and "Q2_K" in err and "IQ2_M" in err and "Q3_K_S" in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["predict"], ["predict", "MODEL"], ["predict", "--quant", "Q2_K"]])
def test_usage_errors(gl, tmp_path, args):
    args = [str(write_config(tmp_path / "m", "phi-4")) if a == "MODEL" else a for a in args]
    code, _, err = gl(*args)
    assert code == 2 and "Traceback" not in err


def test_missing_model_file_is_one_sentence(gl, tmp_path):
    code, _, err = gl("predict", tmp_path / "nope" / "config.json", "-q", "Q2_K")
    assert code == 2 and "config.json: file not found" in err


# ---------------------------------------------------------------- a plugin whose predictor raises

class _Boom:
    name = "boom"
    description = "always raises"

    def predict(self, facts, quant):
        raise RuntimeError("the predictor exploded")


class _BoomPlugin:
    @hookimpl
    def gl_register_predictors(self, register):
        register(_Boom())


def test_a_predictor_that_raises_is_reported_and_the_others_still_run(tmp_path):
    from gl_plugins import host
    from gl_plugins.cli import cli

    cfg = write_config(tmp_path / "m", "phi-4")
    host.reset()
    try:
        host.get_manager().register(_BoomPlugin(), name="gl-boom")
        r = CliRunner().invoke(cli, ["predict", str(cfg), "-q", "Q2_K"], catch_exceptions=False)
        assert r.exit_code == 1
        assert "predictor 'boom' (plugin gl-boom) failed on Q2_K: RuntimeError: the predictor exploded" in r.stderr
        assert "results above are incomplete" in r.stderr
        assert re.search(r"^  boom\s+FAILED", r.stdout, re.M)
        assert re.search(r"^  ffn-ratio\s+fails", r.stdout, re.M)
        assert re.search(r"^  combined\s+fails", r.stdout, re.M)

        r = CliRunner().invoke(cli, ["predict", str(cfg), "-q", "Q2_K", "--json"], catch_exceptions=False)
        assert r.exit_code == 1
        doc = json.loads(r.stdout)
        boom = [e for e in doc if e["predictor"] == "boom"]
        assert boom and boom[0]["plugin"] == "gl-boom" and "exploded" in boom[0]["error"]
        assert {e["predictor"] for e in doc} == BUILTINS | {"combined", "boom"}

        r = CliRunner().invoke(cli, ["predict", "--evidence", "builtin:lab"], catch_exceptions=False)
        assert r.exit_code == 1 and "predictor 'boom' failed on evidence line 1" in r.stderr
        assert re.search(r"^  ffn-ratio\s+4\s+1\s+0\s+0$", r.stdout, re.M)
    finally:
        host.reset()


class _CrashPlugin:
    @hookimpl
    def gl_register_predictors(self, register):
        raise ValueError("bad predictor table")


def test_a_plugin_failing_to_register_makes_the_run_incomplete(tmp_path):
    from gl_plugins import host
    from gl_plugins.cli import cli

    cfg = write_config(tmp_path / "m", "mistral-small-2409")
    host.reset()
    try:
        host.get_manager().register(_CrashPlugin(), name="gl-crash")
        r = CliRunner().invoke(cli, ["predict", str(cfg), "-q", "Q2_K", "--json"], catch_exceptions=False)
        assert r.exit_code == 1
        assert "plugin 'gl-crash' failed in hook gl_register_predictors: ValueError: bad predictor table" in r.stderr
        assert {e["predictor"] for e in json.loads(r.stdout)} == BUILTINS | {"combined"}
    finally:
        host.reset()
