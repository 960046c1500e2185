"""Sensitivities fitted per tensor class and depth, their fallback to role priors, and the KLD estimate."""

from __future__ import annotations

import json
import math

import pytest

from gl_plugins.facts import load_facts
from gl_plugins.model.tensors import quantizable
from gl_plugins.plan.measured import ErrorTable, Figures, TensorErrors
from gl_plugins.plan.recipes import ROLE_WEIGHT
from gl_plugins.plan.sensitivity import (DATA, Sensitivities, estimate, fit_compute_costs, fit_group,
                                         group_of, load)
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
    # with compute costs: each quantized tensor also pays its weight x the cost of its activations' type
    with_costs = {"model": "a", "architecture": "llama",
                  "compute": {"cost": {"Q8_0": 0.001, "Q8_K": 0.004}},
                  "groups": {"ffn_down@0": {"weight": 0.1, "reference_error": 0.01}}}
    s2 = Sensitivities(tied, _doc(with_costs))
    assert s2.compute_costs == pytest.approx({"Q8_0": 0.001, "Q8_K": 0.004, "Q8_1": 0.001})  # Q8_1 as Q8_0
    down = s2.weight("blk.0.ffn_down.weight").value
    assert s2.compute_cost("blk.0.ffn_down.weight", "Q4_K") == pytest.approx(down * 0.004)  # Q8_K activations
    assert s2.compute_cost("blk.0.ffn_down.weight", "Q4_0") == pytest.approx(down * 0.001)  # Q8_0
    assert s2.compute_cost("blk.0.ffn_down.weight", "Q4_1") == pytest.approx(down * 0.001)  # Q8_1
    assert s2.compute_cost("blk.0.ffn_down.weight", "F16") == 0.0
    paid = sum(s2.compute_cost(t.name, "Q4_K") for t in tensors)
    assert paid == pytest.approx(0.004 * sum(s2.weight(t.name).value for t in tensors))
    assert estimate(s2, table, tensors, types)[0] == pytest.approx(est + paid)
    assert estimate(s2, table, tensors, {t.name: "F16" for t in tensors})[0] == 0.0  # nothing quantized
    assert Sensitivities(tied, _doc(_model("a", "llama", {"ffn_down@0": 0.1}))).compute_costs == {}  # none fitted
    types["blk.0.ffn_down.weight"] = "F16"  # a float type costs nothing
    est_f16, _ = estimate(s, table, tensors, types)
    assert est_f16 == pytest.approx(est - 0.01 * 0.1)
    types["blk.1.ffn_up.weight"] = "Q2_K"  # never measured: no estimate, and the tensor is named
    assert estimate(s, table, tensors, types) == (None, ["blk.1.ffn_up.weight"])


def test_compute_costs_are_what_the_weights_leave_of_the_two_reference_files(six_layers):
    """The Q8_0 file pays Q8_0 activations on every tensor; the Q6_K file pays Q8_K activations where its
    rows fit 256 and Q8_0 where they fell back, and the Q8_0 part is taken at the first file's price."""
    tied, _ = six_layers
    tensors = quantizable(tied)
    weights = Sensitivities(tied, _doc(_model("a", "llama", {"ffn_down@0": 0.2})))
    table = ErrorTable("m", None, ["Q8_0", "Q6_K"], 128, "helper", DATA, {})
    for t in tensors:
        te = TensorErrors(t.name, tuple(t.shape), "F16", 1, 1, False)
        te.errors["Q8_0"] = Figures(1e-5, 1.0, 1e-5, 1.0)
        te.errors["Q6_K"] = Figures(1e-4, 1.0, 1e-4, 1.0)
        table.tensors[t.name] = te
    w = {t.name: weights.weight(t.name).value for t in tensors}
    total = sum(w.values())
    q6 = {t.name: ("Q8_0" if t.name == "blk.0.ffn_down.weight" else "Q6_K") for t in tensors}  # one fell back
    k8, k6 = 1e-5 * total + 0.002, 0.02
    fitted = fit_compute_costs(weights, table, tensors, {"Q8_0": ({n: "Q8_0" for n in w}, k8), "Q6_K": (q6, k6)})
    c8 = fitted["cost"]["Q8_0"]
    assert c8 == pytest.approx(0.002 / total, rel=1e-4)
    err6 = sum(w[n] * (1e-5 if q6[n] == "Q8_0" else 1e-4) for n in w)
    on_k = total - w["blk.0.ffn_down.weight"]
    assert fitted["cost"]["Q8_K"] == pytest.approx((k6 - err6 - c8 * w["blk.0.ffn_down.weight"]) / on_k, rel=1e-4)
    assert fitted["references"]["Q6_K"]["weights"] == {"Q8_0": pytest.approx(w["blk.0.ffn_down.weight"], rel=1e-4),
                                                       "Q8_K": pytest.approx(on_k, rel=1e-4)}
    # a reference measured below what its weight errors explain costs nothing, never less
    low = fit_compute_costs(weights, table, tensors, {"Q8_0": ({n: "Q8_0" for n in w}, 0.0)})
    assert low["cost"] == {"Q8_0": 0.0}


def test_the_activation_types_are_llama_cpps(llama_bin):
    """VEC_DOT_TYPE against type_traits_cpu in the ggml-cpu.c of the pinned llama.cpp sources (the sdist
    the tools were built from)."""
    import re
    import tarfile

    from gl_plugins.ggml_types import VEC_DOT_TYPE, activation_type
    from gl_plugins.toolchain import llamacpp

    sdist = llamacpp._download_sdist(llamacpp.cache_root() / "downloads", echo=print)  # cached by the build
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/ggml/src/ggml-cpu/ggml-cpu.c"))
        text = tar.extractfile(member).read().decode()
    start = "type_traits_cpu[GGML_TYPE_COUNT] = {"
    body = text[text.index(start) + len(start):]
    body = body[:body.index("\n};")]
    found = {}
    for name, block in re.findall(r"\[GGML_TYPE_(\w+)\]\s*=\s*\{(.*?)\n    \}", body, re.S):
        m = re.search(r"\.vec_dot_type\s*=\s*GGML_TYPE_(\w+)", block)
        if m:
            found[name] = m.group(1)
    assert len(found) >= 25
    assert {k: v for k, v in found.items() if k in VEC_DOT_TYPE} == {k: VEC_DOT_TYPE[k] for k in found
                                                                    if k in VEC_DOT_TYPE}
    assert set(VEC_DOT_TYPE) <= set(found)
    assert activation_type("Q4_K") == "Q8_K" and activation_type("I32") == "F32"


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
