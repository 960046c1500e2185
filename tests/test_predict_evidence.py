"""Evidence files: the format gl experiment appends to, and gl predict --evidence scoring predictors on them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gl_plugins.errors import InputError
from gl_plugins.predict.evidence import append_evidence, read_evidence, score
from gl_plugins.facts import load_facts
from model_configs import write_config

# FACTS.md: ratio = intermediate / hidden, computed from the real configs
LAB = {"hf:Qwen/Qwen2.5-7B": (5.29, "works"), "hf:mistralai/Mistral-Small-Instruct-2409": (2.67, "works"),
       "hf:mistralai/Mistral-7B-v0.3": (3.50, "fails"), "hf:microsoft/phi-4": (3.50, "fails"),
       "hf:google/gemma-4-E2B": (4.00, "fails")}


def test_builtin_evidence_holds_the_five_lab_observations():
    obs = read_evidence("builtin:lab")
    assert [o.model for o in obs] == list(LAB)
    for o in obs:
        ratio, outcome = LAB[o.model]
        facts = o.model_facts()  # inline: no network
        assert o.quant == "Q2_K" and o.outcome == outcome and o.note
        assert round(facts.ffn_ratios[0], 2) == ratio
    g4 = obs[-1].model_facts()
    assert g4.kv_shared_layers == list(range(15, 35)) and g4.ffn_sizes[15] == 12288
    assert g4.global_attention_layers == [4, 9, 14, 19, 24, 29, 34]
    # the two models the lab notes called sliding-window have none
    assert not obs[2].model_facts().sliding_window_layers and not obs[3].model_facts().sliding_window_layers


def test_builtin_scores_are_reported_honestly(gl):
    code, out, err = gl("predict", "--evidence", "builtin:lab")
    assert code == 0, err
    assert "Evidence: 5 observations (gl's built-in lab observations)" in out
    rows = {m[0]: tuple(map(int, m[1:])) for m in
            re.findall(r"^  (\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)}
    assert rows["ffn-ratio"] == (4, 1, 0, 0)  # Qwen2.5-7B sits inside the band but worked
    assert rows["sliding-window"] == (3, 2, 0, 0)
    assert rows["combined"] == (4, 1, 0, 0)
    assert rows["quant-error"] == (0, 0, 5, 0)  # the lab's models are configs: no tensor data to measure
    assert set(rows) == {"ffn-ratio", "sliding-window", "kv-sharing", "shape-fallback", "quant-error", "combined"}

    code, out, err = gl("predict", "--evidence", "builtin:lab", "--json", "--explain")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["observations"] == 5 and doc["evidence"] == "builtin:lab"
    ffn = next(s for s in doc["scores"] if s["predictor"] == "ffn-ratio")
    assert ffn["accuracy"] == 0.8
    wrong = [d for d in ffn["details"] if d["result"] == "wrong"]
    assert [(d["model"], d["verdict"], d["outcome"]) for d in wrong] == [("hf:Qwen/Qwen2.5-7B", "fails", "works")]


def test_builtin_measured_evidence_is_the_frontier_gl_measured():
    """bench/builtin_evidence.py wrote it from bench/results/quality.json: one line per frontier file."""
    rows = json.loads((Path(__file__).parents[1] / "bench" / "results" / "quality.json").read_text())
    obs = read_evidence("builtin:measured")
    assert len(obs) == len(rows) and {o.model for o in obs} == {"pkg:gemma3-270m-f16", "pkg:qwen2.5-coder-1.5b-f16"}
    by_key = {}
    for r in rows:  # one key can stand for several sizes: Gemma's Q2_K_S and IQ2_S weigh the same
        by_key.setdefault(r["key"], []).append(r)
    for o in obs:
        assert o.note.startswith("gl bench/quality.py: ") and o.source == "builtin:measured"
        # the outcome is gl floor's default gates on the measured figures
        works = o.figures["kld_mean"] <= 0.3 and (o.figures.get("loop_share") or 0) <= 0.5
        assert o.outcome == ("works" if works else "fails"), o.note
        if o.plan:
            assert any(r["kind"] != "stock" and r["type"] == o.quant for r in by_key[o.plan])
        assert o.model_facts().architecture in ("gemma3", "qwen2")  # inline facts: no file needed
    assert sum(1 for o in obs if not o.plan) == sum(1 for r in rows if r["kind"] == "stock")


def test_builtin_scores_each_source_apart(gl):
    code, out, err = gl("predict", "--evidence", "builtin")
    assert code == 0, err
    lab, measured = out.split("\n\n")[:2]
    assert lab.startswith("Evidence: 5 observations (gl's built-in lab observations)")
    assert re.search(r"^  ffn-ratio\s+4\s+1\s+0\s+0$", lab, re.M)
    n = len(read_evidence("builtin:measured"))
    plans = sum(1 for o in read_evidence("builtin:measured") if o.plan)
    assert measured.startswith(f"Evidence: {n} observations (gl's measurements of its sample models' frontier")
    rows = {m[0]: tuple(map(int, m[1:])) for m in
            re.findall(r"^  (\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", measured, re.M)}
    assert all(r[2] >= plans for r in rows.values())  # every predictor abstains on the plans
    code, out, err = gl("predict", "--evidence", "builtin", "--json")
    doc = json.loads(out)
    assert [s["source"] for s in doc["sources"]] == ["builtin:lab", "builtin:measured"]
    assert doc["observations"] == 5 + n and [s["observations"] for s in doc["sources"]] == [5, n]
    ffn = {s["predictor"]: s for s in doc["scores"]}["ffn-ratio"]
    per = [{x["predictor"]: x for x in s["scores"]}["ffn-ratio"] for s in doc["sources"]]
    assert ffn["right"] == sum(p["right"] for p in per) and ffn["abstained"] == sum(p["abstained"] for p in per)


def test_band_changes_the_measured_score(gl):
    code, out, _ = gl("predict", "--evidence", "builtin:lab", "--band", "3.0-5.2")
    assert code == 0
    assert re.search(r"^  ffn-ratio\s+5\s+0\s+0\s+0$", out, re.M)  # fitted to the same five: not a test


def test_model_and_evidence_together(gl, tmp_path):
    cfg = write_config(tmp_path / "m", "mistral-7b-v0.3")
    code, out, err = gl("predict", cfg, "-q", "Q2_K", "--evidence", "builtin", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {"predictions", "scores", "observations", "evidence"} <= set(doc)
    assert any(e["predictor"] == "combined" for e in doc["predictions"])


def test_own_evidence_file_with_model_paths_and_inline_facts(gl, tmp_path):
    write_config(tmp_path / "models" / "phi", "phi-4")
    write_config(tmp_path / "models" / "small", "mistral-small-2409")
    no_ffn = tmp_path / "models" / "bare" / "config.json"
    no_ffn.parent.mkdir(parents=True)
    no_ffn.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32}))
    ev = tmp_path / "runs" / "evidence.jsonl"
    append_evidence(ev, {"model": "../models/phi", "quant": "q2_k", "outcome": "fails", "note": "looped"})
    append_evidence(ev, {"model": "../models/small", "quant": "Q2_K", "outcome": "works",
                         "figures": {"bpw": 3.1, "ppl_delta": 0.9}})
    append_evidence(ev, {"model": "../models/bare", "quant": "Q2_K", "outcome": "works"})
    facts = load_facts(tmp_path / "models" / "phi").to_dict(with_tensors=False)
    append_evidence(ev, {"facts": facts, "quant": "Q3_K_M", "outcome": "works"})
    obs = read_evidence(ev)
    assert [o.quant for o in obs] == ["Q2_K", "Q2_K", "Q2_K", "Q3_K_M"]
    assert obs[1].figures == {"bpw": 3.1, "ppl_delta": 0.9} and obs[0].note == "looped"

    code, out, err = gl("predict", "--evidence", ev, "--explain")
    assert code == 0, err
    assert re.search(r"^  ffn-ratio\s+3\s+0\s+1\s+0$", out, re.M)  # the bare config: abstained
    assert "line 3: ../models/bare Q2_K works: predicted unknown -> abstained" in out


def test_score_function_counts_right_wrong_abstained():
    class Always:
        def __init__(self, name, verdict):
            self.name, self.verdict = name, verdict

        def predict(self, facts, quant):
            from gl_plugins.predict.predictions import Prediction
            return Prediction(self.name, quant, self.verdict, 0.5, ["fixed"])

    class Raises:
        name = "raises"

        def predict(self, facts, quant):
            raise ValueError("no")

    scores = score([Always("fails", "fails"), Always("risky", "risky"), Always("ok", "ok"),
                    Always("unknown", "unknown"), Raises()], read_evidence("builtin:lab"))
    assert (scores["fails"].right, scores["fails"].wrong) == (3, 2)
    assert (scores["risky"].right, scores["risky"].wrong) == (3, 2)  # risky counts as predicting "fails"
    assert (scores["ok"].right, scores["ok"].wrong) == (2, 3)
    assert scores["unknown"].abstained == 5 and scores["unknown"].accuracy is None
    assert scores["raises"].errors == 5 and "ValueError: no" in scores["raises"].details[0]["error"]


@pytest.mark.parametrize("line, message", [
    ('{"model": "x", "quant": "Q2_K", "outcome": "works"', "is not valid JSON"),
    ('{"model": "x", "quant": "Q2_K", "outcome": "hung"}', "'outcome' must be \"works\" or \"fails\""),
    ('{"model": "x", "quant": "Q2_XL", "outcome": "works"}', "unknown quant type 'Q2_XL'"),
    ('{"quant": "Q2_K", "outcome": "works"}', "needs 'model' or 'facts'"),
    ('{"facts": {"hidden_size": "big"}, "quant": "Q2_K", "outcome": "works"}', "facts field 'hidden_size'"),
    ('{"model": "x", "quant": "Q2_K", "outcome": "works", "figures": {"bpw": "6.9"}}', "'figures'"),
    ('[1, 2]', "must be a JSON object"),
])
def test_bad_evidence_lines_name_file_and_line(gl, tmp_path, line, message):
    ev = tmp_path / "evidence.jsonl"
    good = json.dumps({"model": "x", "quant": "Q2_K", "outcome": "works"})
    ev.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(InputError) as e:
        read_evidence(ev)
    assert e.value.line == 3 and message in str(e.value)
    code, _, err = gl("predict", "--evidence", ev)
    assert code == 2 and f"{ev} (line 3): " in err and "Traceback" not in err


def test_unreadable_model_in_evidence_names_the_line(gl, tmp_path):
    ev = tmp_path / "evidence.jsonl"
    append_evidence(ev, {"model": "no/such-model-here", "quant": "Q2_K", "outcome": "works"})
    code, _, err = gl("predict", "--evidence", ev, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                                                        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")})
    assert code == 2 and f"{ev} (line 1): model 'no/such-model-here' cannot be read" in err


def test_append_refuses_a_bad_observation_and_leaves_the_file_alone(tmp_path):
    ev = tmp_path / "deep" / "er" / "evidence.jsonl"
    append_evidence(ev, {"model": "a", "quant": "Q2_K", "outcome": "fails"})
    before = ev.read_bytes()
    with pytest.raises(InputError):
        append_evidence(ev, {"model": "a", "quant": "Q2_K", "outcome": "maybe"})
    assert ev.read_bytes() == before
    assert before.count(b"\n") == 1 and json.loads(before)["outcome"] == "fails"


def test_missing_evidence_file(gl, tmp_path):
    code, _, err = gl("predict", "--evidence", tmp_path / "none.jsonl")
    assert code == 2 and "none.jsonl: evidence file not found" in err


def test_evidence_judged_by_measured_kld_and_loops(gl, tmp_path):
    """--max-kld / --max-loops replace the recorded outcome by what the figures say; lines without them are out."""
    write_config(tmp_path / "phi", "phi-4")
    ev = tmp_path / "ev.jsonl"
    # recorded as "works", but its measured KLD is high; and one with a low KLD that looped on most prompts
    append_evidence(ev, {"model": "phi", "quant": "Q2_K", "outcome": "works",
                         "figures": {"kld_mean": 0.8, "loop_share": 0.0}})
    append_evidence(ev, {"model": "phi", "quant": "Q3_K_M", "outcome": "works",
                         "figures": {"kld_mean": 0.05, "loop_share": 0.75}})
    append_evidence(ev, {"model": "phi", "quant": "Q4_K_M", "outcome": "works"})  # no figures
    code, out, err = gl("predict", "--evidence", ev, "--json", "--explain", "--max-kld", "0.3")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["observations"] == 2 and doc["left_out"] == 1
    ffn = next(s for s in doc["scores"] if s["predictor"] == "ffn-ratio")
    assert [(d["quant"], d["outcome"]) for d in ffn["details"]] == [("Q2_K", "fails"), ("Q3_K_M", "works")]
    code, out, err = gl("predict", "--evidence", ev, "--json", "--explain", "--max-kld", "0.3",
                        "--max-loops", "0.5")
    doc = json.loads(out)
    ffn = next(s for s in doc["scores"] if s["predictor"] == "ffn-ratio")
    assert [d["outcome"] for d in ffn["details"]] == ["fails", "fails"]
    assert doc["judged_by"] == "works when mean KLD <= 0.3 and loop share <= 0.5"
    code, _, err = gl("predict", "--max-kld", "0.3")
    assert code == 2 and "--max-kld and --max-loops judge evidence" in err
    code, _, err = gl("predict", "--evidence", ev, "--max-loops", "2")
    assert code == 2 and "--max-loops" in err
