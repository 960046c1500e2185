"""gl experiment: the lab's "quantize to Q2_K and see whether it still talks", made repeatable.

Story: the user runs ``gl experiment BASE --quant Q2_K --evidence runs.jsonl``
on the real Gemma 3 270M. gl quantizes with the stock type, validates the
result against the base, and appends one line with the outcome and the
figures. ``gl predict --evidence runs.jsonl`` then scores every predictor on
that observation.
"""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """llama.cpp on one thread: on this shared 2-core machine two threads mostly wait on each other."""
    monkeypatch.setenv("GL_THREADS", "1")


def test_experiment_records_an_outcome_predict_scores(gl, gemma_f16, tmp_path):
    ev = tmp_path / "runs.jsonl"
    code, stdout, stderr = gl("experiment", gemma_f16, "--quant", "q2_k", "--evidence", ev)
    assert code == 0, stderr  # the experiment ran; its outcome is in the record
    (line,) = ev.read_text().splitlines()
    obs = json.loads(line)
    assert obs["model"] == str(gemma_f16) and obs["quant"] == "Q2_K"
    assert obs["facts"]["architecture"] == "gemma3" and obs["facts"]["hidden_size"] == 640
    assert "tensors" not in obs["facts"]
    figures = obs["figures"]
    assert figures["bpw"] == pytest.approx(6.88, abs=0.01)  # FACTS.md: stock Q2_K on this model
    assert figures["perplexity_ratio"] == pytest.approx(figures["perplexity"] / figures["base_perplexity"], abs=1e-3)
    # stock Q2_K costs this small model much of its perplexity: the validators call it a failure
    assert obs["outcome"] == "fails" and figures["perplexity_ratio"] > 1.5
    assert obs["note"].startswith("gl experiment: ") and "perplexity-ratio" in obs["note"]
    assert re.search(r"^outcome: Q2_K fails \(bpw 6\.8\d+, predicted_bpw 6\.8\d+, perplexity ", stdout, re.M)
    assert f"gl predict --evidence {ev}" in stdout
    assert list(tmp_path.iterdir()) == [ev]  # the quantized file was temporary

    code, out, err = gl("predict", "--evidence", ev, "--json", "--explain")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["observations"] == 1
    scores = {s["predictor"]: s for s in doc["scores"]}
    assert {"ffn-ratio", "sliding-window", "kv-sharing", "shape-fallback", "combined"} <= set(scores)
    for s in scores.values():
        (d,) = s["details"]
        assert (d["quant"], d["outcome"]) == ("Q2_K", "fails") and d["result"] in ("right", "wrong", "abstained")
    assert scores["ffn-ratio"]["details"][0]["verdict"] == "fails"  # 3.2× is inside the lab's band
    assert scores["ffn-ratio"]["right"] == 1

    # the KL divergence against the base is in the record (FACTS: stock Q2_K of this model measured 0.56)
    assert 0.2 < figures["kld_mean"] < 1.5 and figures["kld_p99"] > figures["kld_mean"]
    assert 0 < figures["kld_same_top_p"] < 1 and figures["loop_share"] is not None
    # and predictors can be scored on it: judged by KLD alone the same file "works" under a loose gate ...
    code, out, err = gl("predict", "--evidence", ev, "--json", "--max-kld", "2")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["judged_by"] == "works when mean KLD <= 2" and doc["left_out"] == 0
    ffn = next(s for s in doc["scores"] if s["predictor"] == "ffn-ratio")
    assert (ffn["right"], ffn["wrong"]) == (0, 1)  # ffn-ratio said "fails"
    # ... and "fails" under a strict one
    code, out, err = gl("predict", "--evidence", ev, "--max-kld", "0.1")
    assert code == 0, err
    assert "outcomes judged by the measured figures: works when mean KLD <= 0.1; 0 observation(s)" in out


def test_experiment_refuses_a_type_llama_quantize_does_not_have(gl, gemma_f16, tmp_path):
    code, _, stderr = gl("experiment", gemma_f16, "--quant", "Q3_XL", "--evidence", tmp_path / "e.jsonl")
    assert code == 2 and "unknown quant type 'Q3_XL'" in stderr
    assert list(tmp_path.iterdir()) == []
