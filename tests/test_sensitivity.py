"""Sensitivities fitted per tensor class and depth, their fallback to role priors, and the KLD estimate."""

from __future__ import annotations

import json
import math

import pytest

from gl_plugins.facts import load_facts
from gl_plugins.model.tensors import quantizable
from gl_plugins.plan.measured import ErrorTable, Figures, TensorErrors
from gl_plugins.plan.recipes import ROLE_WEIGHT
from gl_plugins.plan.sensitivity import DATA, Sensitivities, estimate, fit_group, group_of, load
from synth import SynthSpec, write_model


@pytest.fixture(scope="module")
def six_layers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sens")
    tied, untied = folder / "tied.gguf", folder / "untied.gguf"
    write_model(tied, SynthSpec(n_layer=6, tie_output=True))
    write_model(untied, SynthSpec(n_layer=6, tie_output=False))
    return load_facts(str(tied)), load_facts(str(untied))


def _doc(*models):
    return {"format": 1, "command": "python bench/sensitivity.py", "models": list(models)}


def _model(name, arch, groups):
    return {"model": name, "architecture": arch, "groups": {g: {"weight": w} for g, w in groups.items()}}


def test_groups_are_class_and_third_of_the_layers(six_layers):
    tied, untied = six_layers
    assert group_of(tied, "blk.0.ffn_down.weight") == "ffn_down@0"
    assert group_of(tied, "blk.1.ffn_down.weight") == "ffn_down@0"
    assert group_of(tied, "blk.2.attn_v.weight") == "attn_v@1"
    assert group_of(tied, "blk.5.attn_q.weight") == "attn_q@2"
    assert group_of(tied, "token_embd.weight") == "output"  # tied: the embedding is the output projection
    assert group_of(untied, "token_embd.weight") == "token_embd"
    assert group_of(untied, "output.weight") == "output"


def test_fitted_weights_of_the_same_architecture_win_and_the_rest_fall_back_to_scaled_priors(six_layers):
    tied, _ = six_layers
    doc = _doc(_model("a", "llama", {"ffn_down@0": 0.02, "attn_q@1": 0.003, "attn_k@2": 0.0}),
               _model("b", "qwen2", {"ffn_down@0": 0.5}))
    s = Sensitivities(tied, doc)
    w = s.weight("blk.0.ffn_down.weight")
    assert w.fitted and w.value == pytest.approx(0.02) and w.group == "ffn_down@0"
    # the scale maps the priors of the measured groups onto their weights (geometric mean of the ratios);
    # a group measured at no cost (attn_k@2) is not a fitted weight
    scale = math.sqrt((0.02 / ROLE_WEIGHT["ffn_down"]) * (0.003 / ROLE_WEIGHT["attn_q"]))
    assert s.scale == pytest.approx(scale)
    up = s.weight("blk.3.ffn_up.weight")
    assert not up.fitted and up.kind == f"role prior x {scale:.3g}" and up.value == pytest.approx(scale * 1.0)
    assert s.weight("blk.5.attn_k.weight").kind.startswith("role prior x")
    assert s.describe()["fitted"] == "fitted on a" and s.describe()["groups"] == 2

    other = Sensitivities(tied, _doc(_model("a", "gemma3", {"ffn_down@0": 0.02}),
                                     _model("b", "qwen2", {"ffn_down@0": 0.08})))
    assert other.weight("blk.0.ffn_down.weight").value == pytest.approx(0.04)  # no llama model: geometric mean
    assert other.describe()["fitted"] == "fitted on a, b (geometric mean)"


def test_fit_and_estimate(six_layers):
    tied, _ = six_layers
    assert fit_group(0.01, 0.5) == pytest.approx(0.02)
    assert fit_group(-0.001, 0.5) == 0.0 and fit_group(0.01, 0.0) == 0.0
    tensors = quantizable(tied)
    s = Sensitivities(tied, _doc(_model("a", "llama", {"ffn_down@0": 0.1})))
    table = ErrorTable("m", None, ["Q4_K"], 128, "helper", DATA, {})
    for t in tensors:
        te = TensorErrors(t.name, tuple(t.shape), "F16", 1, 1, False)
        te.errors["Q4_K"] = Figures(0.01, 1.0, 0.01, 1.0)
        table.tensors[t.name] = te
    types = {t.name: "Q4_K" for t in tensors}
    est, missing = estimate(s, table, tensors, types)
    assert not missing
    assert est == pytest.approx(sum(0.01 * s.weight(t.name).value for t in tensors))
    with_ref = {"model": "a", "architecture": "llama", "reference_kld": 0.003,
                "groups": {"ffn_down@0": {"weight": 0.1, "reference_error": 0.01}}}
    s2 = Sensitivities(tied, _doc(with_ref))
    assert s2.intercept == pytest.approx(0.003 - 0.1 * 0.01)  # what the weights leave of the reference's KLD
    assert estimate(s2, table, tensors, types)[0] == pytest.approx(est + s2.intercept)
    assert estimate(s2, table, tensors, {t.name: "F16" for t in tensors})[0] == 0.0  # nothing quantized
    types["blk.0.ffn_down.weight"] = "F16"  # a float type costs nothing
    est_f16, _ = estimate(s, table, tensors, types)
    assert est_f16 == pytest.approx(est - 0.01 * 0.1)
    types["blk.1.ffn_up.weight"] = "Q2_K"  # never measured: no estimate, and the tensor is named
    assert estimate(s, table, tensors, types) == (None, ["blk.1.ffn_up.weight"])


def test_the_shipped_weights_cover_every_group_of_both_sample_models():
    """bench/sensitivity.py fitted them: every group of both models lowered once, with its figures."""
    doc = load()
    assert doc["command"].startswith("python bench/sensitivity.py")
    by = {m["model"]: m for m in doc["models"]}
    assert set(by) == {"gemma3-270m", "qwen2.5-coder-1.5b"}
    assert (by["gemma3-270m"]["architecture"], by["qwen2.5-coder-1.5b"]["architecture"]) == ("gemma3", "qwen2")
    classes = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    layers = {f"{c}@{i}" for c in classes for i in range(3)}
    assert set(by["gemma3-270m"]["groups"]) == layers | {"output"}  # tied embedding
    assert set(by["qwen2.5-coder-1.5b"]["groups"]) == layers | {"token_embd", "output"}
    for m in by.values():
        assert m["reference"] == "Q8_0" and 0 < m["reference_kld"] < 0.01 and m["chunks"] == 4
        for g, row in m["groups"].items():
            assert row["delta_error"] > 0 and row["weight"] == pytest.approx(
                max(row["delta_kld"], 0) / row["delta_error"], rel=1e-3), (m["model"], g)
            assert row["kld"] == pytest.approx(m["reference_kld"] + row["delta_kld"], abs=1e-5)
            assert 0 < row["reference_error"] < row["delta_error"]
    json.dumps(doc)


def test_a_tensor_whose_importance_sits_on_a_few_columns_is_given_its_unweighted_error_at_the_models_ratio():
    """Qwen's early ffn_down: the imatrix-weighted error is 100-400x below the unweighted one in every type,
    which would make Q2_K look free there. Such a tensor gets its unweighted error x the median
    weighted/unweighted ratio of the other tensors; the others keep their weighted error."""
    from gl_plugins.plan.measured import CONCENTRATED

    table = ErrorTable("m", "imatrix.gguf", ["Q2_K", "Q4_K"], 128, "helper", DATA, {})
    ratios = {"blk.0.ffn_down.weight": 0.5, "blk.0.ffn_up.weight": 0.7, "blk.1.ffn_up.weight": 0.9,
              "blk.1.ffn_down.weight": 0.004}
    for name, r in ratios.items():
        te = TensorErrors(name, (256, 256), "F16", 128, 256, True)
        te.errors["Q2_K"] = Figures(0.08 * r, 1.0, 0.08, 1.0)
        te.errors["Q4_K"] = Figures(0.004 * r, 1.0, 0.004, 1.0)
        table.tensors[name] = te
    assert table.concentrated == {"blk.1.ffn_down.weight"}
    assert 0.004 < CONCENTRATED < 0.5
    median = 0.6  # of 0.5, 0.7, 0.9 and 0.004
    assert table.error("blk.1.ffn_down.weight", "Q2_K") == pytest.approx(0.08 * median)
    assert table.error("blk.1.ffn_down.weight", "Q4_K") == pytest.approx(0.004 * median)
    assert table.error("blk.0.ffn_up.weight", "Q2_K") == pytest.approx(0.08 * 0.7)
    assert table.classes()["ffn_down"]["errors"]["Q2_K"] == pytest.approx((0.08 * 0.5 + 0.08 * median) / 2)
    assert table.to_dict()["concentrated"] == ["blk.1.ffn_down.weight"]


def test_without_an_imatrix_no_tensor_counts_as_concentrated():
    table = ErrorTable("m", None, ["Q2_K"], 128, "helper", DATA, {})
    for name in ("blk.0.ffn_down.weight", "blk.1.ffn_down.weight"):
        te = TensorErrors(name, (256, 256), "F16", 128, 256, False)
        te.errors["Q2_K"] = Figures(0.08, 1.0, 0.08, 1.0)
        table.tensors[name] = te
    assert not table.concentrated
    assert table.error("blk.0.ffn_down.weight", "Q2_K") == pytest.approx(0.08)
