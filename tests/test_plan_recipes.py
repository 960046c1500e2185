"""The built-in recipes: what each decides, and that their plans say exactly what llama-quantize will do."""

from __future__ import annotations

import numpy as np
import pytest

from gl_plugins.errors import GLError
from gl_plugins.facts import load_facts
from gl_plugins.plan.resolve import resolve
from gl_plugins.plan.recipes import Budget, Protect, Uniform, sensitivity
from synth import SynthSpec, tensors_for, write_model

SPEC = SynthSpec(arch="llama", n_layer=8, hidden=512, ffn=1024, n_head=8, n_head_kv=2, vocab=600, tie_output=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipes")
    path = d / "m.gguf"
    write_model(path, SPEC)
    return load_facts(path)


def _imatrix(path, skip=()):
    from gl_plugins.imatrix.formats import OutEntry, write_gguf

    entries = [OutEntry(n, 1, s[-1], False, lambda ne0=s[-1]: (np.ones((1, ne0), np.float32) * 500,
                                                                np.array([500.0]), None))
               for n, s in tensors_for(SPEC) if len(s) == 2 and n.startswith("blk.") and n not in skip]
    write_gguf(path, entries, datasets=["t"], chunk_count=1, chunk_size=500)
    return path


@pytest.mark.parametrize("target", [3.0, 3.5, 4.5, 6.0, 9.0])
def test_budget_stays_within_and_close_to_the_target(synth, target):
    res = resolve(Budget().plan(synth, target_bpw=target), synth)
    assert res.bpw <= target + 1e-9
    assert res.bpw > target - 0.15
    assert not res.fallbacks() and not res.needs_imatrix()


def test_more_bits_never_raise_the_estimated_error(synth):
    errs = [Budget().plan(synth, target_bpw=t).params["estimated_error"] for t in (3.0, 3.5, 4.0, 5.0, 6.5, 8.5)]
    assert errs == sorted(errs, reverse=True) and errs[0] > errs[-1]


def test_budget_spends_bits_where_the_priors_say(synth):
    res = resolve(Budget().plan(synth, target_bpw=4.0), synth)
    bpw = {a.name: a.bpw for a in res.assignments}
    assert bpw["output.weight"] >= bpw["blk.4.ffn_up.weight"]
    assert bpw["blk.4.attn_v.weight"] >= bpw["blk.4.attn_q.weight"]
    assert sensitivity(synth, "blk.0.ffn_down.weight") > sensitivity(synth, "blk.4.ffn_down.weight")


def test_imatrix_unlocks_iq_types_only_for_covered_tensors(synth, tmp_path):
    plain = resolve(Budget().plan(synth, target_bpw=2.6), synth)
    assert not {a.type for a in plain.assignments} & {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ1_S", "IQ1_M"}
    imx = _imatrix(tmp_path / "i.gguf", skip={"blk.3.ffn_up.weight"})
    plan = Budget().plan(synth, target_bpw=2.6, imatrix_path=str(imx))
    res = resolve(plan, synth)
    assert plan.imatrix and res.bpw <= 2.6
    needing = {a.name for a in res.needs_imatrix()}
    assert needing and "blk.3.ffn_up.weight" not in needing
    assert not needing & {"token_embd.weight", "output.weight"}
    assert plan.params["estimated_error"] < Budget().plan(synth, target_bpw=2.6).params["estimated_error"]


def test_exclude_embeddings_counts_the_budget_without_them(synth):
    plan = Budget().plan(synth, target_bpw=3.0, exclude_embeddings=True, embedding_type="Q6_K")
    res = resolve(plan, synth)
    assert res.tensor("token_embd.weight").type == "Q6_K"
    assert 2.85 < res.bpw_excluding(["token_embd.weight"]) <= 3.0
    assert res.bpw > 3.0


def test_budget_below_the_smallest_file_gives_the_smallest(synth):
    res = resolve(Budget().plan(synth, target_bpw=0.5), synth)
    floor = resolve(Budget().plan(synth, target_bpw=0.6), synth)
    assert res.bytes == floor.bytes and res.bpw > 0.5


@pytest.mark.slow
def test_budget_on_gemma_uses_only_types_that_fit_640_wide_rows(gemma_f16):
    facts = load_facts(gemma_f16)
    plan = Budget().plan(facts, target_bpw=5.0)
    res = resolve(plan, facts)
    assert 4.9 < res.bpw <= 5.0 and not res.fallbacks()
    for a in res.assignments:
        assert a.shape[0] % {"Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256,
                             "IQ4_XS": 256, "IQ3_S": 256}.get(a.type, 1) == 0


@pytest.mark.slow
def test_protect_on_gemma_protects_global_attention_and_edges(gemma_f16):
    facts = load_facts(gemma_f16)
    assert facts.global_attention_layers == [5, 11, 17]
    plan = Protect().plan(facts, low="Q2_K", attn="Q3_K", high="Q8_0")
    res = resolve(plan, facts)
    t = {a.name: a.type for a in res.assignments}
    assert t["blk.5.attn_q.weight"] == t["blk.11.attn_k.weight"] == "Q8_0"       # global attention
    assert t["blk.0.ffn_up.weight"] == t["blk.17.ffn_down.weight"] == "Q8_0"     # first and last layer
    assert t["blk.3.attn_v.weight"] == "Q8_0"                                     # attn_v
    assert t["blk.3.attn_output.weight"] == "Q3_K"                                # 1024-wide: Q3_K fits
    assert t["blk.3.attn_q.weight"] == "Q4_0"                                     # 640-wide: Q3_K -> Q4_0
    assert t["blk.3.ffn_down.weight"] == "Q2_K" and t["blk.3.ffn_up.weight"] == "Q4_0"
    assert t["token_embd.weight"] == "Q8_0"  # tied: the output type, Q6_K fitted to 640-wide rows
    fitted = {n: (a, u) for n, a, u in plan.params["fitted"]}
    assert fitted["blk.3.ffn_up.weight"] == ("Q2_K", "Q4_0")
    assert plan.params["classes"]["global-attn"] == 8  # 4 attention weights x layers 5 and 11 (17 is an edge)


def test_protect_classes_can_be_chosen(synth):
    plan = Protect().plan(synth, protect=("attn-v",), low="Q3_K", high="Q6_K", attn="Q4_K")
    t = {a.name: a.type for a in resolve(plan, synth).assignments}
    assert t["blk.0.ffn_up.weight"] == "Q3_K"          # first layer not protected
    assert t["blk.0.attn_v.weight"] == "Q6_K"
    assert t["output.weight"] == "Q3_K"                 # output not protected: the low type
    assert plan.params["protect"] == ["attn-v"]


def test_uniform_keeps_embeddings_makeable(synth):
    plan = Uniform().plan(synth, type_="IQ2_XS")
    res = resolve(plan, synth)
    assert plan.imatrix
    assert res.tensor("token_embd.weight").type == res.tensor("output.weight").type == "Q4_K"
    assert res.tensor("blk.2.ffn_up.weight").type == "IQ2_XS"
    with pytest.raises(GLError, match="llama-imatrix records none for the embeddings"):
        Uniform().plan(synth, type_="Q4_K", embedding_type="iq2_xxs")
