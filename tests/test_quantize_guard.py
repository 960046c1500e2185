"""gl quantize --guard on the real Gemma 3 270M: the plan and llama.cpp's stock type of nearest size are both
quantized and measured against the base, and the better file is OUT."""

from __future__ import annotations

import json
import os

import pytest

from gl_plugins.plan.recipes import STOCK_LADDER
from gl_plugins.quantize import provenance

pytestmark = pytest.mark.slow


def _guarded(gl, gemma_f16, out, *recipe):
    code, text, err = gl("quantize", gemma_f16, out, *recipe, "--guard")
    assert code == 0, text + err
    record = provenance.load(provenance.path_for(out))
    return text, record, record["guard"]


def test_a_budget_plan_that_measures_better_is_kept(gl, gemma_f16, tmp_path):
    out = tmp_path / "budget.gguf"
    text, record, g = _guarded(gl, gemma_f16, out, "--recipe", "budget", "--target-bpw", "6.88")
    plan, stock = g["plan"], g["stock"]
    assert g["stock_type"] in STOCK_LADDER and abs(stock["bpw"] - plan["bpw"]) < 0.15
    # measured: budget at the size of stock Q2_K loses far less than the stock mixture on this model
    assert plan["kld"]["mean"] < stock["kld"]["mean"] / 4
    assert g["kept"] == "plan" and record["plan"]["recipe"] == "budget"
    assert f"guard: the plan: {plan['bpw']:.3f} bpw" in text and f"guard: stock {g['stock_type']}: " in text
    assert f"guard: kept the plan ({plan['kld']['mean'] / stock['kld']['mean']:.2f}x stock's mean KLD)" in text
    assert sorted(os.listdir(tmp_path)) == ["budget.gguf", "budget.gguf.gl.json"]  # the candidates are gone
    assert record["output"]["path"] == "budget.gguf" and record["output"]["bytes"] == out.stat().st_size
    code, _, err = gl("validate", out, "--only", "plan-match")
    assert code == 0, err


def test_a_plan_that_collapses_gives_way_to_stock(gl, gemma_f16, tmp_path):
    out = tmp_path / "q1.gguf"
    text, record, g = _guarded(gl, gemma_f16, out, "--recipe", "uniform", "--type", "Q1_0", "--json")
    assert g["kept"] == "stock" and "generation-collapse" in g["plan"]["errors"]
    assert record["plan"]["recipe"] != "uniform"  # OUT is the stock file, described as such
    assert json.loads(text)["guard"]["kept"] == "stock"
    code, _, err = gl("validate", out, "--only", "plan-match")
    assert code == 0, err


def test_guard_needs_a_plan_and_keeps_an_existing_out(gl, gemma_f16, tmp_path):
    code, _, err = gl("quantize", gemma_f16, tmp_path / "x.gguf", "--base-type", "Q4_K_M", "--guard")
    assert code == 2 and "--guard compares a plan with llama.cpp's stock type of nearest size" in err
    there = tmp_path / "there.gguf"
    there.write_bytes(b"mine")
    code, _, err = gl("quantize", gemma_f16, there, "--recipe", "budget", "--target-bpw", "6.88", "--guard")
    assert code == 2 and f"{there}: already exists; pass --force to replace it" in err
    assert there.read_bytes() == b"mine" and sorted(os.listdir(tmp_path)) == ["there.gguf"]


def test_a_guarded_gl_toml_build_goes_through_the_guard(gemma_f16, tmp_path):
    """What gl publish runs for build = { …, guard = true }."""
    from gl_plugins.quantize.run import build_variant

    out = tmp_path / "v.gguf"
    said = []
    result = build_variant(gemma_f16, out, recipe="budget", options={"target_bpw": 6.88}, guard=True, echo=said.append)
    assert result.output == out and out.is_file() and result.record["guard"]["kept"] == "plan"
    assert any(m.startswith("guard: kept the plan") for m in said)
