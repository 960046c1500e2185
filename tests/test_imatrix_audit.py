"""Auditing an imatrix against a model and the intended quantization, on synthetic models.

Story: the user has a model that the real test model cannot stand in for
(KV-shared layers as in Gemma 4, experts, NextN blocks) and an imatrix as
llama-imatrix would make it. `gl imatrix audit` says what is covered, why the
rest is not, whether llama-quantize will refuse; `--emit-rules` writes the
pins that let llama-quantize finish, and the real llama-quantize proves it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gl_plugins.facts import Tensor, load_facts
from gl_plugins.model.gguf_header import read_header
from gl_plugins.imatrix.formats import read_imatrix
from synth import SynthSpec, write_model
from imatrix_files import forward_pass_entries, run_quantize, write_dat_imatrix, write_gguf_imatrix

SHARED = {3, 4, 5}


def _kv_shared_skip(name):
    layer, role = int(name.split(".")[1]), name.split(".", 2)[2]
    return layer in SHARED and role in ("attn_k.weight", "attn_v.weight")


@pytest.fixture(scope="module")
def gemma4(tmp_path_factory):
    """A Gemma 4 style model: 6 layers, the last 3 reuse an earlier layer's KV cache."""
    d = tmp_path_factory.mktemp("gemma4")
    model = write_model(d / "g4.gguf", SynthSpec(arch="gemma4", n_layer=6, n_kv_shared=3, ple=64, hidden=256,
                                                 ffn=512))[0]
    facts = load_facts(model)
    assert set(facts.kv_shared_layers) == SHARED
    imx = write_gguf_imatrix(d / "g4.imatrix.gguf", forward_pass_entries(facts, skip=_kv_shared_skip))
    return model, imx


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    """A Qwen3-MoE style model: 3 layers of 8 experts, the last a NextN block."""
    d = tmp_path_factory.mktemp("moe")
    model = write_model(d / "moe.gguf", SynthSpec(arch="qwen3moe", n_layer=3, n_expert=8, n_expert_used=2,
                                                  expert_ffn=256, hidden=256,
                                                  extra_kv={"qwen3moe.nextn_predict_layers": 1}))[0]
    return model, load_facts(model)


def tensor_types(path) -> dict[str, str]:
    return {t.name: t.type_name for t in read_header(path).tensors}


def test_kv_shared_gap_is_named_explained_and_remedied(gemma4, tmp_path, gl):
    model, imx = gemma4
    rules = tmp_path / "rules.txt"
    code, out, err = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "IQ2_XXS", "--json",
                        "--emit-rules", rules)
    assert code == 1, err
    doc = json.loads(out)
    assert doc["missing"] == ["blk.3.attn_k.weight", "blk.4.attn_k.weight", "blk.5.attn_k.weight"]
    assert doc["missing_ranges"] == ["blk.3\u20135.attn_k.weight"]
    assert doc["coverage"]["required"] - doc["coverage"]["covered"] == 3
    [f] = doc["findings"]
    assert {"severity", "code", "tensor", "message", "hint"} <= set(f)
    assert (f["severity"], f["code"], f["tensor"]) == ("error", "imatrix-missing-kv-shared",
                                                       "blk.3\u20135.attn_k.weight")
    assert "reuse the K/V cache" in f["message"] and "llama-quantize will refuse" in f["message"]
    assert "--emit-rules" in f["hint"]
    assert rules.read_text() == "^blk\\.(?:3|4|5)\\.attn_k\\.weight$=q2_k\n"

    # the real llama-quantize refuses the request as given ...
    r = run_quantize("--imatrix", imx, model, tmp_path / "refused.gguf", "IQ2_XXS")
    assert r.returncode != 0
    assert "Missing importance matrix for tensor blk.3.attn_k.weight" in r.stdout + r.stderr
    # ... and finishes it with the emitted rules, giving the pinned type and the predicted size
    out_path = tmp_path / "ok.gguf"
    r = run_quantize("--imatrix", imx, "--tensor-type-file", rules, model, out_path, "IQ2_XXS")
    assert r.returncode == 0, r.stderr[-2000:]
    types = tensor_types(out_path)
    assert [types[f"blk.{i}.attn_k.weight"] for i in (3, 4, 5)] == ["Q2_K"] * 3
    assert types["blk.0.attn_k.weight"] == "IQ2_XXS"
    bpw = float(re.search(r"quant size\s*=\s*[\d.]+ MiB \(([\d.]+) BPW\)", r.stdout + r.stderr).group(1))
    assert abs(doc["remedy"]["bpw_after"] - bpw) < 0.01


def test_text_output_names_range_cause_and_cost(gemma4, tmp_path, gl):
    model, imx = gemma4
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "IQ2_XXS", "--emit-rules",
                      tmp_path / "r.txt")
    assert code == 1
    assert "missing:  blk.3\u20135.attn_k.weight" in out
    assert re.search(r"coverage: (\d+)/(\d+) tensors whose planned type needs an imatrix", out)
    assert re.search(r"pinned 3 tensor\(s\) .*\(Q2_K\): [\d.]+ -> [\d.]+ bpw \(\+[\d.]+ bpw", out)


def test_without_a_quant_gaps_are_warnings(gemma4, gl):
    model, imx = gemma4
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["missing_ranges"] == ["blk.3\u20135.attn_k.weight", "blk.3\u20135.attn_v.weight"]
    assert {f["severity"] for f in doc["findings"]} == {"warning"}


def test_a_map_that_puts_attn_v_at_iq2_needs_its_shared_layers_too(gemma4, tmp_path, gl):
    model, imx = gemma4
    m = tmp_path / "map.txt"
    m.write_text("attn_v=iq2_xxs\nffn_down=q3_k\n")
    rules = tmp_path / "rules.txt"
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--plan", m, "--quant", "IQ2_XXS", "--json",
                      "--emit-rules", rules)
    assert code == 1
    doc = json.loads(out)
    assert doc["missing_ranges"] == ["blk.3\u20135.attn_k.weight", "blk.3\u20135.attn_v.weight"]
    lines = rules.read_text().split()
    # pins first (llama-quantize takes the first rule that matches), then the map's own rules
    assert lines[-2:] == ["attn_v=iq2_xxs", "ffn_down=q3_k"]
    assert "^blk\\.(?:3|4|5)\\.attn_v\\.weight$=q2_k" in lines[:-2]
    r = run_quantize("--imatrix", imx, "--tensor-type-file", rules, model, tmp_path / "o.gguf", "IQ2_XXS")
    assert r.returncode == 0, r.stderr[-2000:]
    types = tensor_types(tmp_path / "o.gguf")
    assert types["blk.4.attn_v.weight"] == "Q2_K" and types["blk.1.attn_v.weight"] == "IQ2_XXS"
    assert types["blk.1.ffn_down.weight"] == "Q3_K"


def test_a_map_without_a_base_type_is_a_usage_error(gemma4, tmp_path, gl):
    model, imx = gemma4
    m = tmp_path / "map.txt"
    m.write_text("attn_v=iq2_xxs\n")
    code, _, err = gl("imatrix", "audit", model, "--imatrix", imx, "--plan", m)
    assert code == 2 and "--quant" in err
    code, _, err = gl("imatrix", "audit", model, "--imatrix", imx, "--emit-rules", tmp_path / "x.txt")
    assert code == 2 and "--emit-rules needs --quant or --plan" in err


def test_unrouted_experts_partial_warn_and_all_zero_is_garbage(moe, tmp_path, gl):
    model, facts = moe
    entries = forward_pass_entries(facts, skip=lambda n: n.startswith("blk.2."))
    for role in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
        sums, counts = entries[f"blk.1.{role}.weight"]
        counts = counts.copy()
        counts[[2, 5]] = 0
        entries[f"blk.1.{role}.weight"] = (sums, counts)
        sums, counts = entries[f"blk.0.{role}.weight"]
        entries[f"blk.0.{role}.weight"] = (sums, np.zeros_like(counts))
    imx = write_gguf_imatrix(tmp_path / "moe.gguf", entries, chunk_count=2, chunk_size=64)
    rules = tmp_path / "rules.txt"
    code, out, err = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "IQ2_XXS", "--json",
                        "--emit-rules", rules)
    assert code == 1, err
    doc = json.loads(out)
    by_code = {}
    for f in doc["findings"]:
        by_code.setdefault(f["code"], []).append(f)
    unrouted = by_code["imatrix-missing-unrouted"]
    assert sorted(f["tensor"] for f in unrouted) == ["blk.0.ffn_down_exps.weight", "blk.0.ffn_gate_exps.weight",
                                                     "blk.0.ffn_up_exps.weight"]
    assert all(f["severity"] == "error" and "garbage" in f["message"] for f in unrouted)
    assert "the run saw 128 tokens (2 chunks × 64)" in unrouted[0]["message"]
    assert "too few chunks" in unrouted[0]["message"]
    partial = by_code["imatrix-unrouted-experts"]
    assert {f["severity"] for f in partial} == {"warning"} and len(partial) == 3
    assert "blk.1.ffn_up_exps.weight: experts 2,5" in " ".join(f["evidence"] for f in partial)
    nextn = by_code["imatrix-missing-nextn"]
    assert {f["tensor"] for f in nextn} >= {"blk.2.attn_q.weight", "blk.2.ffn_up_exps.weight"}
    assert "NextN" in nextn[0]["message"]
    assert doc["coverage"]["partial"] == 3
    pinned = set(doc["remedy"]["pins"])
    assert pinned == set(doc["missing"])
    r = run_quantize("--imatrix", imx, "--tensor-type-file", rules, model, tmp_path / "o.gguf", "IQ2_XXS")
    assert r.returncode == 0, r.stderr[-2000:]
    assert tensor_types(tmp_path / "o.gguf")["blk.0.ffn_up_exps.weight"] == "Q2_K"


def test_legacy_file_marks_unrouted_experts_with_importance_one(moe, tmp_path, gl):
    model, facts = moe
    entries = {}
    for name, (sums, counts) in forward_pass_entries(facts).items():
        values = (sums / counts[:, None]) * 4
        if name == "blk.1.ffn_up_exps.weight":
            values[[1, 6]] = 4.0  # what llama-imatrix writes for an expert with count 0: 1 × ncall
        entries[name] = (values, 4)
    imx = write_dat_imatrix(tmp_path / "moe.dat", entries)
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "IQ2_XXS", "--json")
    doc = json.loads(out)
    [f] = [f for f in doc["findings"] if f["code"] == "imatrix-unrouted-experts"]
    assert f["tensor"] == "blk.1.ffn_up_exps.weight" and "experts 1,6" in f["message"]
    assert code == 0 and doc["missing"] == []


def test_nan_and_inf_stop_llama_quantize_and_are_errors(gemma4, tmp_path, gl):
    model, _ = gemma4
    facts = load_facts(model)
    entries = forward_pass_entries(facts, skip=_kv_shared_skip)
    sums, counts = entries["blk.1.ffn_up.weight"]
    sums = sums.copy()
    sums[0, 7] = np.nan
    entries["blk.1.ffn_up.weight"] = (sums, counts)
    imx = write_gguf_imatrix(tmp_path / "nan.gguf", entries)
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "Q4_K_M", "--json")
    assert code == 1
    [f] = json.loads(out)["findings"]
    assert f["code"] == "imatrix-nonfinite" and f["tensor"] == "blk.1.ffn_up.weight"
    offset = read_imatrix(imx).entries["blk.1.ffn_up.weight"].offset + 7 * 4
    assert f["evidence"] == f"first at byte {offset}"
    assert np.isnan(np.frombuffer(imx.read_bytes()[offset:offset + 4], dtype="<f4")[0])
    r = run_quantize("--imatrix", imx, model, tmp_path / "o.gguf", "Q4_K_M")
    assert r.returncode != 0 and "non-finite" in r.stdout + r.stderr


def test_negative_and_all_zero_rows(gemma4, tmp_path, gl):
    model, _ = gemma4
    entries = forward_pass_entries(load_facts(model), skip=_kv_shared_skip)
    sums, counts = entries["blk.0.attn_q.weight"]
    entries["blk.0.attn_q.weight"] = (np.zeros_like(sums), counts)
    sums, counts = entries["blk.2.ffn_gate.weight"]
    sums = sums.copy()
    sums[0, 3] = -1.0
    entries["blk.2.ffn_gate.weight"] = (sums, counts)
    imx = write_gguf_imatrix(tmp_path / "z.gguf", entries)
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "IQ2_XXS", "--json")
    codes = {(f["code"], f["tensor"], f["severity"]) for f in json.loads(out)["findings"]}
    assert ("imatrix-zero-rows", "blk.0.attn_q.weight", "error") in codes
    assert ("imatrix-negative", "blk.2.ffn_gate.weight", "error") in codes
    assert code == 1


def test_imatrix_of_another_model(gemma4, tmp_path, gl):
    model, imx = gemma4
    # same tensor names, other widths: llama-quantize stops on the size
    other = write_model(tmp_path / "wide.gguf", SynthSpec(arch="gemma4", n_layer=6, n_kv_shared=3, ple=64,
                                                          hidden=512, ffn=512))[0]
    code, out, _ = gl("imatrix", "audit", other, "--imatrix", imx, "--quant", "Q4_K_M", "--json")
    assert code == 1
    found = {f["code"]: f for f in json.loads(out)["findings"]}
    assert "holds 256 values where this model needs 512" in found["imatrix-shape-mismatch"]["message"]
    r = run_quantize("--imatrix", imx, other, tmp_path / "o.gguf", "Q4_K_M")
    assert r.returncode != 0 and "imatrix size 256 is different from tensor size 512" in r.stdout + r.stderr
    # other names altogether
    llama = write_model(tmp_path / "llama.gguf", SynthSpec(arch="llama", n_layer=2))[0]
    moe_imx = write_gguf_imatrix(tmp_path / "moe.gguf", {f"blk.{i}.ffn_up_exps.weight": (np.ones((8, 256)),
                                                                                       np.ones(8))
                                                         for i in range(40)})
    code, out, _ = gl("imatrix", "audit", llama, "--imatrix", moe_imx, "--quant", "IQ2_XXS", "--json")
    doc = json.loads(out)
    assert code == 1 and "imatrix-other-model" in {f["code"] for f in doc["findings"]}
    assert {f["code"] for f in doc["findings"] if f["tensor"]} == {"imatrix-missing-other-model"}


def test_gguf_without_metadata_is_refused_by_llama_quantize(gemma4, tmp_path, gl):
    model, _ = gemma4
    imx = write_gguf_imatrix(tmp_path / "nometa.gguf",
                             forward_pass_entries(load_facts(model), skip=_kv_shared_skip),
                             omit_keys=("imatrix.chunk_size",))
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--quant", "Q4_K_M", "--json")
    [f] = json.loads(out)["findings"]
    assert code == 1 and f["code"] == "imatrix-no-metadata" and "imatrix.chunk_size" in f["message"]
    r = run_quantize("--imatrix", imx, model, tmp_path / "o.gguf", "Q4_K_M")
    assert r.returncode != 0 and "missing imatrix metadata" in r.stdout + r.stderr
    # the fix the hint names
    fixed = tmp_path / "fixed.gguf"
    assert gl("imatrix", "convert", imx, fixed)[0] == 0
    assert gl("imatrix", "audit", model, "--imatrix", fixed, "--quant", "Q4_K_M")[0] == 0


def test_converted_files_are_read_by_llama_quantize(gemma4, tmp_path, gl):
    """Both directions of `gl imatrix convert` give files the real llama-quantize loads in full."""
    model, imx = gemma4
    n = len(read_imatrix(imx).entries)
    dat, back = tmp_path / "c.dat", tmp_path / "c.gguf"
    assert gl("imatrix", "convert", imx, dat)[0] == 0
    assert gl("imatrix", "convert", dat, back)[0] == 0
    for f in (dat, back):
        r = run_quantize("--imatrix", f, model, tmp_path / f"o-{f.suffix[1:]}.gguf", "Q4_K_M")
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"loaded {n} importance matrix entries" in r.stdout + r.stderr


def test_tensors_outside_blocks_get_their_cause(gemma4):
    from gl_plugins.imatrix.coverage import OUTSIDE_BLK, coverage_of, gap_findings

    model, imx = gemma4
    facts = load_facts(model)
    facts.tensors.append(Tensor("mm.input_projection.weight", (256, 256), "F16", 256 * 256 * 2))
    cov = coverage_of(read_imatrix(imx), facts)
    assert cov.missing["mm.input_projection.weight"] == OUTSIDE_BLK
    f = [f for f in gap_findings(cov, read_imatrix(imx), facts) if f.tensor == "mm.input_projection.weight"]
    assert f and "only collects weights named blk.*" in f[0].message


def test_ranges_group_layers_per_role():
    from gl_plugins.imatrix.coverage import ranges

    names = [f"blk.{i}.attn_k.weight" for i in (15, 16, 17, 3, 30, 31)] + ["output.weight",
                                                                          "blk.7.attn_v.weight"]
    assert ranges(names) == ["blk.3,15\u201317,30\u201331.attn_k.weight", "output.weight", "blk.7.attn_v.weight"]


def test_coverage_auditor_is_a_plugin_a_third_party_can_replace():
    from gl_plugins import host
    from gl_plugins.hookspecs import hookimpl

    host.reset()
    try:
        found = host.collect("gl_register_auditors")
        assert found["coverage"].plugin == "gl_plugins.imatrix.coverage"

        class Mine:
            name = "coverage"
            description = "a replacement"

            def audit(self, imatrix, facts, assignments):
                return []

        class Plugin:
            @hookimpl
            def gl_register_auditors(self, register):
                register(Mine())

        host.get_manager().register(Plugin(), name="third-party")
        mine = host.collect("gl_register_auditors")["coverage"]
        assert isinstance(mine.obj, Mine) and mine.replaced == "gl_plugins.imatrix.coverage"
    finally:
        host.reset()


def _with_iq2_embedding(plan_json: str) -> str:
    """A gl plan document's plan with the token embedding set to IQ2_XXS by hand.

    The recipes never choose it (ggml cannot make it without imatrix data, which llama-imatrix
    never collects for embeddings); a hand-written plan can."""
    plan = json.loads(plan_json)["plan"]
    assert plan["token_embedding_type"] != "IQ2_XXS"
    plan["token_embedding_type"] = "IQ2_XXS"
    return json.dumps(plan)


def test_a_gl_plan_json_is_audited_and_the_printed_command_runs(gemma4, tmp_path, gl):
    model, imx = gemma4
    code, out, err = gl("plan", model, "--recipe", "uniform", "--type", "IQ2_XXS", "--json")
    assert code == 0, err
    plan = tmp_path / "plan.json"
    plan.write_text(_with_iq2_embedding(out))
    rules = tmp_path / "rules.txt"
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--plan", plan, "--json", "--emit-rules", rules)
    assert code == 1
    doc = json.loads(out)
    # the plan puts attn_v and, by hand, the token embedding at IQ2_XXS too
    assert doc["missing_ranges"] == ["token_embd.weight", "blk.3\u20135.attn_k.weight",
                                     "blk.3\u20135.attn_v.weight"]
    cmd = doc["remedy"]["command"]
    assert doc["remedy"]["options"] == {"token_embedding_type": "Q2_K"}
    assert cmd[cmd.index("--token-embedding-type") + 1] == "q2_k"
    assert cmd[0] == "llama-quantize" and "--tensor-type-file" in cmd and "OUT.gguf" in cmd
    out_path = tmp_path / "o.gguf"
    r = run_quantize(*[str(out_path) if a == "OUT.gguf" else a for a in cmd[1:]])
    assert r.returncode == 0, r.stderr[-2000:]
    assert tensor_types(out_path)["blk.5.attn_v.weight"] == "Q2_K"


def test_a_model_without_a_tensor_list_is_refused(gemma4, tmp_path, gl):
    _, imx = gemma4
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 256,
                               "num_hidden_layers": 2, "intermediate_size": 512, "num_attention_heads": 4}))
    code, _, err = gl("imatrix", "audit", cfg, "--imatrix", imx, "--quant", "IQ2_XXS")
    assert code == 2 and "needs the model's tensor list" in err


def test_an_iq2_token_embedding_aborts_llama_quantize_and_is_caught(tmp_path, gl):
    """llama-quantize exempts token_embd from its imatrix check, then ggml aborts making IQ2_XXS
    without data; llama-imatrix never records embeddings, so such a plan always crashes."""
    model = write_model(tmp_path / "llama.gguf", SynthSpec(arch="llama", n_layer=2))[0]
    imx = write_gguf_imatrix(tmp_path / "full.gguf", forward_pass_entries(load_facts(model)))
    code, out, err = gl("plan", model, "--recipe", "uniform", "--type", "IQ2_XXS", "--json")
    assert code == 0, err
    (tmp_path / "plan.json").write_text(_with_iq2_embedding(out))
    rules = tmp_path / "rules.txt"
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", imx, "--plan", tmp_path / "plan.json", "--json",
                      "--emit-rules", rules)
    assert code == 1
    doc = json.loads(out)
    assert doc["missing"] == ["token_embd.weight"]
    [f] = doc["findings"]
    assert f["code"] == "imatrix-missing-outside-blk" and "GGML_ASSERT(imatrix != NULL)" in f["message"]
    from gl_plugins.plan.resolve import command, plan_from_dict

    plan = plan_from_dict(json.loads((tmp_path / "plan.json").read_text()))
    crashed = run_quantize(*command(plan, model, tmp_path / "x.gguf", imatrix_path=imx))
    assert crashed.returncode != 0 and "GGML_ASSERT(imatrix != NULL)" in crashed.stdout + crashed.stderr
    cmd = doc["remedy"]["command"]
    r = run_quantize(*[str(tmp_path / "o.gguf") if a == "OUT.gguf" else a for a in cmd[1:]])
    assert r.returncode == 0, r.stderr[-2000:]
    types = tensor_types(tmp_path / "o.gguf")
    assert types["token_embd.weight"] == "Q2_K" and types["blk.0.ffn_up.weight"] == "IQ2_XXS"
