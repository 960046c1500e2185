"""budget --errors measured: types ranked by the errors ggml makes on the model's own weights, the stock
mixture of nearest size weighed with the same errors, and `gl plan --explain`."""

from __future__ import annotations

import json

import pytest

from gl_plugins.errors import GLError
from gl_plugins.facts import facts_from_config, load_facts
from gl_plugins.plan.recipes import Budget
from gl_plugins.model.tensors import role as role_of
from gl_plugins.plan.resolve import resolve, stock_plan
from synth import SynthSpec, write_model

SPEC = SynthSpec(n_layer=2, hidden=256, ffn=512, vocab=512, tie_output=False, dtype="F32")
LEGACY = "Q4_0,Q5_0,Q8_0,F16"


@pytest.fixture(scope="module")
def env(tmp_path_factory, llama_bin):
    """A measurement cache of this module's own; the tools and the digest cache are the usual ones."""
    from gl_plugins.digests import cache_file

    return {"GL_CACHE": str(tmp_path_factory.mktemp("cache")), "GL_LLAMA_CPP": str(llama_bin),
            "GL_DIGEST_CACHE": str(cache_file()), "GL_THREADS": "1"}


@pytest.fixture
def measuring(env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def dequantized(folder, name, *quantize_args):
    """A model that was quantized by llama-quantize (``quantize_args``) and written back as F32, as the
    sample bases are dequantized Q4_K_M files."""
    from gl_plugins.toolchain.llamacpp import run_tool

    raw, q, out = folder / f"raw-{name}.gguf", folder / f"q-{name}.gguf", folder / f"{name}.gguf"
    write_model(raw, SPEC)
    run_tool("llama-quantize", [*quantize_args[:-1], raw, q, quantize_args[-1]])
    run_tool("llama-quantize", ["--allow-requantize", q, out, "F32"])
    return out


@pytest.fixture(scope="module")
def ex_q4_0_ffn_up(tmp_path_factory, llama_bin):
    """Every tensor was Q8_0, blk.1.ffn_up was Q4_0: requantizing it to Q4_0 loses nothing."""
    return dequantized(tmp_path_factory.mktemp("ex-q4_0"), "ex-q4_0",
                       "--tensor-type", r"blk\.1\.ffn_up\.weight=q4_0", "Q8_0")


@pytest.fixture(scope="module")
def ex_q4_k_m(tmp_path_factory, llama_bin):
    return dequantized(tmp_path_factory.mktemp("ex-q4_k_m"), "ex-q4_k_m", "Q4_K_M")


@pytest.mark.slow  # llama-quantize and gl-quant-error run on the synthetic models
def test_measured_errors_give_a_tensor_the_cheap_type_it_loses_nothing_in(measuring, ex_q4_0_ffn_up, capfd):
    facts = load_facts(ex_q4_0_ffn_up)
    plan = Budget().plan(facts, target_bpw=6.0, errors="measured")
    assert "measuring 16 of 16 tensors" in capfd.readouterr().err  # progress on stderr
    types = {a.name: a.type for a in resolve(plan, facts).assignments}
    assert types["blk.1.ffn_up.weight"] == "Q4_0"
    assert plan.params["errors"] == "measured" and plan.params["chosen"] == "budget"
    rows = {r["class"]: r for r in plan.params["explain"]["classes"]}
    assert rows["ffn_up"]["types"]["Q4_0"] == 1 and rows["ffn_up"]["error_source"] == "measured"

    # the table, measured on Gaussian weights, cannot know: the same tensor gets more bits
    table = Budget().plan(facts, target_bpw=6.0)
    chosen = {a.name: a for a in resolve(table, facts).assignments}["blk.1.ffn_up.weight"]
    assert chosen.type != "Q4_0" and chosen.bpw > 4.5
    assert table.params["errors"] == "gaussian" and "chosen" not in table.params

    again = Budget().plan(facts, target_bpw=6.0, errors="measured")  # cached: nothing measured again
    assert "measuring" not in capfd.readouterr().err and again.rules == plan.rules


@pytest.mark.slow  # llama-quantize and gl-quant-error run on the synthetic models
def test_the_stock_mixture_is_returned_when_its_estimated_error_is_lower(measuring, ex_q4_k_m):
    facts = load_facts(ex_q4_k_m)
    stock = resolve(stock_plan("Q4_K_M"), facts)
    target = round(stock.bpw + 0.005, 2)
    # budget may only use the legacy types, where the dequantized Q4_K / Q6_K grid is lost;
    # llama.cpp's own Q4_K_M mixture re-finds it
    plan = Budget().plan(facts, target_bpw=target, types=LEGACY, errors="measured")
    p = plan.params
    assert (p["chosen"], p["stock_type"], p["stock_bpw"]) == ("stock", "Q4_K_M", round(stock.bpw, 4))
    assert p["stock_estimated_error"] < p["budget_estimated_error"]
    # what the stock mixture's estimate holds is nearly all compute cost: its weights are the grid
    assert sum(r["weighted_error"] for r in p["explain"]["classes"]) < 1e-4 < p["budget_estimated_error"] / 10
    assert p["estimated_error"] == p["stock_estimated_error"]
    res = resolve(plan, facts)
    assert {a.name: a.type for a in res.assignments} == {a.name: a.type for a in stock.assignments}
    assert res.bytes == stock.bytes and not res.fallbacks()

    # with every type to choose from, budget finds the grid itself, and spends the rest where the
    # activations cost less: stock is not lower
    own = Budget().plan(facts, target_bpw=target, errors="measured").params
    assert own["chosen"] == "budget" and own["budget_estimated_error"] < own["stock_estimated_error"]


def test_the_allocation_buys_no_byte_that_gains_too_little():
    """Three tensors, each with a cheap option A, a better B and a dear C that saves little more: above
    the size where 1 % more bytes buys less than 1 % of the total error, every budget gets the same,
    smaller pick (all B: 0.3 x 600 bytes, where one C gives 0.299 x 800)."""
    from gl_plugins.plan.recipes import _allocate

    options = [[(100, 1.0, "A"), (200, 0.1, "B"), (400, 0.099, "C")] for _ in range(3)]
    for budget in (700, 1000, 1200):  # enough for every B, and more
        assert _allocate(options, budget, 1.0) == [1, 1, 1]
    assert _allocate(options, 1200) == [2, 2, 2]  # no least gain: the budget is spent on C's 0.001
    assert _allocate(options, 1200, 0.001) == [2, 2, 2]  # a gain that small pays for them
    assert _allocate(options, 500, 1.0) == _allocate(options, 500) == [1, 1, 0]  # short: the budget binds
    assert _allocate(options, 250, 1.0) == [0, 0, 0]  # below the smallest file: the smallest


@pytest.mark.slow  # gl-quant-error measures the real Gemma's F16 base once (about a minute)
def test_on_the_real_gemma_more_bits_that_buy_nothing_are_not_spent(measuring, gemma_f16):
    """The tied 262144 x 640 embedding holds what is left of the error between 6.7 and 7.1 bpw: every
    target there gets one plan, smaller than the targets; --min-gain 0 spends each budget."""
    facts = load_facts(gemma_f16)
    plans = [Budget().plan(facts, target_bpw=t, errors="measured") for t in (6.8, 7.1)]
    p = [x.params for x in plans]
    assert plans[0].rules == plans[1].rules and p[0]["budget_bpw"] == p[1]["budget_bpw"] < 6.8
    assert p[0]["min_gain"] == 1.0 and p[0]["chosen"] == "budget"
    assert resolve(plans[0], facts).bpw == pytest.approx(p[0]["budget_bpw"], abs=0.01)
    spend = Budget().plan(facts, target_bpw=7.1, errors="measured", min_gain=0).params
    assert p[1]["budget_bpw"] < spend["budget_bpw"] <= 7.1
    # the larger plan estimates lower, by less than 1 % per 1 % of size
    gain = (p[1]["budget_estimated_error"] - spend["budget_estimated_error"]) / p[1]["budget_estimated_error"]
    assert 0 <= gain < (spend["budget_bpw"] - p[1]["budget_bpw"]) / p[1]["budget_bpw"]
    with pytest.raises(GLError, match="--min-gain must be a number of percent at or above 0"):
        Budget().plan(facts, target_bpw=7.1, errors="measured", min_gain=-1)


@pytest.mark.slow  # llama-quantize and gl-quant-error run on the synthetic models
def test_explain_prints_per_class_types_error_weight_and_bytes(gl, env, ex_q4_k_m):
    stock = resolve(stock_plan("Q4_K_M"), load_facts(ex_q4_k_m))
    target = str(round(stock.bpw + 0.005, 2))
    args = ["plan", ex_q4_k_m, "--recipe", "budget", "--target-bpw", target, "--types", LEGACY,
            "--errors", "measured", "--explain"]
    code, out, err = gl(*args, env=env)
    assert code == 0, err
    assert "errors measured on this model's weights (128 rows per tensor, no imatrix) by gl-quant-error" in out
    assert "chosen: stock (estimated mean KLD: budget " in out and f"stock Q4_K_M at {round(stock.bpw, 4)} bpw" in out
    assert "compute cost (KLD per unit of weight, by the activations' type ggml multiplies in): Q8_0 " in out
    from gl_plugins.plan.sensitivity import Sensitivities

    weights = Sensitivities(load_facts(ex_q4_k_m))
    out_w = weights.weight("output.weight")
    assert out_w.fitted  # both sample models measured their output
    assert f"weights: KLD per unit of relative error, {weights.source} (python bench/sensitivity.py" in out
    line = next(x for x in out.splitlines() if x.split()[:1] == ["output"] and "fitted" in x).split()
    assert line[1:3] == ["1", stock.tensor("output.weight").type]
    assert line[4:7] == ["measured", f"{out_w.value:.3g}", "fitted"]

    code, out, err = gl(*args, "--json", env=env)
    assert code == 0, err
    doc = json.loads(out)
    explain = doc["explain"]
    assert explain == doc["params"]["explain"] and explain["errors"] == "measured"
    assert explain["concentrated"] == [] and "importance on a few columns" not in out  # no imatrix: none
    rows = {r["class"]: r for r in explain["classes"]}
    by_class = {c["class"]: c for c in doc["classes"]}
    for name, r in rows.items():
        assert set(r) == {"class", "tensors", "types", "error", "error_source", "weights", "weight_source",
                          "weighted_error", "compute_cost", "bytes", "in_budget"}
        assert r["compute_cost"] == pytest.approx(sum(weights.compute_cost(n, t) for n, t in
                                                      ((a.name, a.type) for a in stock.assignments)
                                                      if role_of(n) == name), rel=1e-3)
        assert (r["types"], r["bytes"]) == (by_class[name]["types"], by_class[name]["bytes"])
        assert r["weight_source"] == "fitted" and r["error_source"] == "measured"
    assert rows["output"]["weights"] == [pytest.approx(out_w.value, rel=1e-3)]
    assert rows["ffn_down"]["weights"] == pytest.approx(
        sorted({weights.weight(f"blk.{i}.ffn_down.weight").value for i in (0, 1)}), rel=1e-3)
    assert explain["weights"]["fitted"] == weights.source
    assert sum(r["weighted_error"] + r["compute_cost"] for r in rows.values()) == pytest.approx(
        doc["params"]["stock_estimated_error"], rel=1e-3)

    code, out, err = gl("plan", ex_q4_k_m, "--recipe", "budget", "--target-bpw", target, "--explain", env=env)
    assert code == 0 and "errors from gl's table (Gaussian weights" in out and "chosen:" not in out
    assert "measuring" not in err
    code, out, err = gl("plan", ex_q4_k_m, "--recipe", "uniform", "--type", "q4_0", "--explain", env=env)
    assert code == 2 and err.strip() == "gl: error: recipe uniform records no explanation of its choices; " \
                                        "--explain works with budget"


@pytest.mark.slow  # llama-quantize and gl-quant-error run on the synthetic models
def test_with_an_imatrix_the_errors_are_measured_with_it(measuring, ex_q4_0_ffn_up, tmp_path):
    from gl_plugins.plan.measured import measure_errors
    from test_plan_errors import imatrix_for

    imx = imatrix_for(ex_q4_0_ffn_up, tmp_path / "imatrix.gguf")
    facts = load_facts(ex_q4_0_ffn_up)
    plan = Budget().plan(facts, target_bpw=3.0, imatrix_path=str(imx), errors="measured")
    assert plan.imatrix and plan.params["explain"]["imatrix"] == str(imx)
    table = measure_errors(ex_q4_0_ffn_up, imatrix=imx, types=plan.params["candidates"])
    assert table.measured == 0  # the plan measured with this imatrix: everything is in the cache
    res = resolve(plan, facts)
    rows = {r["class"]: r for r in plan.params["explain"]["classes"]}
    for cls in ("ffn_down", "attn_q"):
        errs = [table.error(a.name, a.type) for a in res.assignments if a.name.endswith(f".{cls}.weight")]
        assert rows[cls]["error"] == pytest.approx(sum(errs) / len(errs), rel=1e-3)
        assert all(table.tensors[a.name].weighted for a in res.assignments if a.name.endswith(f".{cls}.weight"))
    assert {a.type for a in res.assignments} & {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ1_S", "IQ1_M"}


@pytest.mark.slow
def test_on_the_real_qwen_measured_errors_find_the_grid_of_the_q4_k_m_file(qwen_f16):
    """The F16 base is the Q4_K_M file dequantized: at that size every tensor can go back to its type."""
    from gl_plugins.toolchain.samples import provision

    original = {t.name: t.type for t in load_facts(provision("qwen2.5-coder-1.5b")).tensors}
    facts = load_facts(qwen_f16)
    only_grid = Budget().plan(facts, target_bpw=5.01, errors="measured", types="Q4_K,Q6_K")  # one activation type
    res = resolve(only_grid, facts)
    same = sum(a.type == original[a.name] for a in res.assignments)
    assert same >= len(res.assignments) - 4 and res.bpw <= 5.01
    p = only_grid.params
    assert p["chosen"] == "budget" and p["stock_type"] == "Q4_K_M"
    assert p["budget_estimated_error"] < p["stock_estimated_error"]
    # with every type, what stays of the weights' error is as small, and the rest goes where the
    # activations are multiplied in blocks of 32 (Q8_0, Q8_1) instead of 256
    every = Budget().plan(facts, target_bpw=5.01, errors="measured")
    rows = every.params["explain"]["classes"]
    assert sum(r["weighted_error"] for r in rows) < 1e-4
    q = every.params
    assert q["budget_estimated_error"] <= p["budget_estimated_error"] and q["budget_bpw"] <= 5.01


CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
          "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "vocab_size": 512}


@pytest.mark.parametrize("kind", ["config", "hf"])
def test_a_source_without_tensor_data_is_one_sentence_naming_it(tmp_path, kind):
    from gl_plugins.model.derived_tensors import with_tensors

    source = str(tmp_path / "config.json") if kind == "config" else "hf:org/tiny"
    facts, derived = with_tensors(facts_from_config(CONFIG, source, kind=kind))
    assert derived and facts.tensors
    assert Budget().plan(facts, target_bpw=4.0).params["errors"] == "gaussian"  # the table needs no weights
    with pytest.raises(GLError) as e:
        Budget().plan(facts, target_bpw=4.0, errors="measured")
    assert str(e.value).startswith(f"{source}: budget --errors measured needs the model's weights, and ")
    assert "give the GGUF file" in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_measured_errors_for_a_config_and_a_bad_choice(gl, tmp_path, synthetic_model):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    code, out, err = gl("plan", cfg, "--recipe", "budget", "--target-bpw", "4", "--errors", "measured")
    assert code == 2 and str(cfg) in err and "GGUF" in err and len(err.strip().splitlines()) == 1
    code, out, err = gl("plan", synthetic_model, "--recipe", "budget", "--target-bpw", "4", "--errors", "noise")
    assert code == 2 and "'noise' is not one of 'gaussian', 'measured'" in err and "Traceback" not in err
