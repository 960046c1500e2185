"""gl's resolver against llama-quantize itself: the same type for every tensor, the same size.

The oracle is ``llama-quantize --dry-run`` on the real Gemma 3 270M F16 base and on
synthetic models with awkward shapes (odd row lengths, GQA 8, per-layer FFN widths,
KV-shared layers with per-layer embeddings, experts). A real quantization with a gl
map is read back with ``gguf`` and must hold exactly the planned types.
"""

from __future__ import annotations

import pytest

from gl_plugins.plan.dry_run import disagreements, dry_run
from gl_plugins.facts import load_facts
from gl_plugins.plan.resolve import resolve, stock_plan
from synth import SynthSpec, write_model

SYNTH = {
    "llama-320-gqa5": SynthSpec(arch="llama", n_layer=9, hidden=320, ffn=864, n_head=5, n_head_kv=1, vocab=500,
                                tie_output=False),
    "llama-gqa8-mixed-ffn": SynthSpec(arch="llama", n_layer=16, hidden=256, ffn=[512] * 8 + [544] * 8, n_head=8,
                                      n_head_kv=1, head_dim=32, vocab=300, tie_output=False),
    "gemma4-kv-shared-ple": SynthSpec(arch="gemma4", n_layer=10, hidden=384, ffn=[768] * 5 + [1536] * 5, n_head=4,
                                      n_head_kv=1, head_dim=96, n_kv_shared=4, ple=64, vocab=400),
    "qwen3moe-8-experts": SynthSpec(arch="qwen3moe", n_layer=4, hidden=256, ffn=512, n_expert=8, n_expert_used=2,
                                    expert_ffn=96, n_head=4, n_head_kv=2, vocab=300, tie_output=False),
    "gemma3-288": SynthSpec(arch="gemma3", n_layer=6, hidden=288, ffn=1152, n_head=4, n_head_kv=1, head_dim=72,
                            vocab=260),
}
SYNTH_FTYPES = ["Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q4_0",
                "IQ4_XS", "IQ3_XXS", "IQ3_XS", "IQ3_M", "IQ2_M", "IQ2_XXS", "IQ1_M", "TQ2_0", "MXFP4_MOE"]


@pytest.fixture(scope="module")
def synth_models(tmp_path_factory, llama_bin):
    d = tmp_path_factory.mktemp("synth")
    out = {}
    for name, spec in SYNTH.items():
        path = d / f"{name}.gguf"
        write_model(path, spec)
        out[name] = path
    return out


def _agree(model, plan, facts):
    res = resolve(plan, facts)
    dr = dry_run(model, plan)
    assert disagreements(res, dr) == []
    assert len(dr.types) == len(res.assignments) == len(facts.tensors)
    return res, dr


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_S", "Q4_K_M", "Q2_K_S", "Q3_K_M", "Q5_K_S", "IQ4_XS", "IQ2_M",
                                   "Q2_0", "F16"])
def test_stock_types_match_llama_quantize_on_real_gemma(gemma_f16, ftype):
    facts = load_facts(gemma_f16)
    res, dr = _agree(gemma_f16, stock_plan(ftype), facts)
    assert abs(res.bpw - dr.bpw) < 0.01


@pytest.mark.slow
def test_facts_md_figures_for_stock_types_on_gemma_hold(gemma_f16):
    facts = load_facts(gemma_f16)
    got = {ft: resolve(stock_plan(ft), facts) for ft in ("Q2_K", "Q3_K_S", "Q4_K_M")}
    assert {ft: round(r.bpw, 2) for ft, r in got.items()} == {"Q2_K": 6.88, "Q3_K_S": 6.87, "Q4_K_M": 7.36}
    assert len(got["Q2_K"].fallbacks()) == 90
    assert len(got["Q2_K"].assignments) == 236


@pytest.mark.slow
@pytest.mark.parametrize("recipe,options", [
    ("uniform", {"type_": "Q4_K"}),
    ("uniform", {"type_": "IQ4_XS", "embedding_type": "Q6_K"}),
    ("protect", {}),
    ("protect", {"low": "Q3_K", "protect": ("attn-v", "output"), "edge_layers": 2}),
    ("budget", {"target_bpw": 4.0}),
    ("budget", {"target_bpw": 5.0, "exclude_embeddings": True}),
])
def test_gl_recipes_match_llama_quantize_on_real_gemma(gemma_f16, recipe, options):
    from gl_plugins import host

    facts = load_facts(gemma_f16)
    plan = host.collect("gl_register_recipes")[recipe].obj.plan(facts, **options)
    res, dr = _agree(gemma_f16, plan, facts)
    assert res.fallbacks() == [] and dr.n_fallback == 0  # gl's maps never leave a fallback to llama.cpp


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(SYNTH))
def test_stock_types_match_llama_quantize_on_awkward_shapes(synth_models, model):
    path = synth_models[model]
    facts = load_facts(path)
    for ftype in SYNTH_FTYPES:
        res = resolve(stock_plan(ftype), facts)
        dr = dry_run(path, stock_plan(ftype))
        assert disagreements(res, dr) == [], ftype


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(SYNTH))
def test_gl_recipes_match_llama_quantize_on_awkward_shapes(synth_models, model):
    from gl_plugins.plan.recipes import Budget, Protect, Uniform

    path = synth_models[model]
    facts = load_facts(path)
    for plan in (Uniform().plan(facts, type_="Q3_K"), Protect().plan(facts),
                 Budget().plan(facts, target_bpw=3.5)):
        _agree(path, plan, facts)


@pytest.mark.slow
def test_rules_lowercased_first_match_and_flags_match_llama_quantize(synth_models):
    """Hand-made rules exercising lowercasing, first-match order, unanchored patterns and flags."""
    from gl_plugins.plan.resolve import Rule, TensorPlan

    path = synth_models["gemma4-kv-shared-ple"]
    facts = load_facts(path)
    plan = TensorPlan(base_type="Q4_K_M", rules=[
        Rule(r"BLK\.1\.ATTN_V", "Q8_0"),          # upper case: lowercased by llama-quantize
        Rule("blk.1", "q6_k"),                    # catches blk.1.* (layer 1 only here: 10 layers)
        Rule(r"ffn_\D", "IQ4_XS"),                # \D becomes \d: matches nothing
        Rule("ffn_up", "q5_k"),
        Rule("ffn_up", "q2_k"),                   # fully shadowed by the previous rule
        Rule("per_layer_token_embd", "q4_0"),     # a rule may name it despite --token-embedding-type
        Rule(r"attn_(q|k)\.weight$", "Q3_K"),
    ], token_embedding_type="q8_0")
    res, _ = _agree(path, plan, facts)
    assert res.tensor("blk.1.attn_v.weight").reason.startswith("rule 1:")
    assert res.tensor("per_layer_token_embd.weight").type == "Q4_0"
    assert res.tensor("token_embd.weight").reason == "token embedding type"
    assert not any(a.rule == 5 for a in res.assignments)


@pytest.mark.slow
def test_real_quantization_with_gl_map_has_exactly_the_planned_types(gemma_f16, tmp_path):
    import gguf

    from gl_plugins.toolchain.llamacpp import run_tool
    from gl_plugins.plan.resolve import command
    from gl_plugins.plan.recipes import Protect
    from gl_plugins.plan.tensor_map import write_map

    facts = load_facts(gemma_f16)
    plan = Protect().plan(facts, low="Q3_K", attn="Q4_K", high="Q6_K")
    res = resolve(plan, facts)
    map_path = tmp_path / "map.txt"
    write_map(map_path, plan.rules)
    out = tmp_path / "out.gguf"
    run_tool("llama-quantize", command(plan, gemma_f16, out, map_path, threads=2), timeout=1800)
    reader = gguf.GGUFReader(str(out))
    got = {t.name: t.tensor_type.name for t in reader.tensors}
    want = {a.name: a.type for a in res.assignments}
    assert got == want
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    assert sizes == {a.name: a.bytes for a in res.assignments}


@pytest.mark.slow
def test_real_quantization_of_synthetic_model_matches_plan(synth_models, tmp_path):
    import gguf

    from gl_plugins.toolchain.llamacpp import run_tool
    from gl_plugins.plan.resolve import command
    from gl_plugins.plan.recipes import Budget
    from gl_plugins.plan.tensor_map import write_map

    path = synth_models["qwen3moe-8-experts"]
    facts = load_facts(path)
    plan = Budget().plan(facts, target_bpw=4.2)
    res = resolve(plan, facts)
    map_path = tmp_path / "map.txt"
    write_map(map_path, plan.rules)
    out = tmp_path / "out.gguf"
    run_tool("llama-quantize", command(plan, path, out, map_path, threads=2), timeout=600)
    got = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors}
    assert got == {a.name: a.type for a in res.assignments}
