"""The quant-error predictor on the real Gemma 3 270M F16 base: a mean KLD predicted without quantizing."""

from __future__ import annotations

import json

import pytest

from gl_plugins.predict.quant_error import BAND, verdict_for


def test_the_verdict_is_the_gate_with_the_accuracy_band_above_it():
    assert verdict_for(0.3, 0.3) == "ok" and verdict_for(0.1, 0.3) == "ok"
    assert verdict_for(0.31, 0.3) == "risky" and verdict_for(0.3 * BAND, 0.3) == "risky"
    assert verdict_for(0.3 * BAND + 1e-6, 0.3) == "fails"


def test_a_config_or_an_unmeasured_model_is_not_judged(gl, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
                               "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "num_key_value_heads": 2, "vocab_size": 512}))
    code, out, err = gl("predict", cfg, "-q", "Q4_K_M", "--json")
    assert code == 0, err
    (qe,) = [e for e in json.loads(out) if e["predictor"] == "quant-error"]
    assert qe["verdict"] == "unknown" and "needs the model's tensor data" in qe["reasons"][0]
    assert "predicted_kld" not in qe


@pytest.mark.slow  # gl-quant-error measures the real model's tensors
def test_real_gemma_predicted_kld_orders_the_types_and_prints_its_accuracy(gl, gemma_f16):
    code, out, err = gl("predict", gemma_f16, "-q", "Q2_K", "-q", "Q4_K_M", "-q", "Q8_0", "--measure-errors",
                        "--json")
    assert code == 0, err
    got = {e["quant"]: e for e in json.loads(out) if e["predictor"] == "quant-error"}
    kld = {q: got[q]["predicted_kld"] for q in got}
    # near the base the estimate is coarse (requantizing the dequantized Q4_K_M grid measures almost no
    # error, docs/predict.md), so only the far end is ordered
    assert 0 < max(kld["Q8_0"], kld["Q4_K_M"]) < 0.01 < 0.1 < kld["Q2_K"]
    assert got["Q8_0"]["verdict"] == got["Q4_K_M"]["verdict"] == "ok" and got["Q2_K"]["verdict"] != "ok"
    reasons = " ".join(got["Q2_K"]["reasons"])
    assert "frontier files of gemma3-270m, qwen2.5-coder-1.5b" in reasons and "Spearman" in reasons
    assert "weights fitted (fitted on gemma3-270m)" in reasons and "judges the KLD only" in reasons
    # measured now, so a plain run (no --measure-errors) judges from the cache
    code, out, err = gl("predict", gemma_f16, "-q", "Q8_0")
    assert code == 0 and "measuring" not in err
    assert "quant-error      ok" in out and "predicted mean KLD" in out
