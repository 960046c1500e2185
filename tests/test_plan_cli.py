"""`gl plan MODEL --recipe NAME`: the summary, the map file, the JSON document, the command line."""

from __future__ import annotations

import json

import pytest


def test_recipes_are_registered_through_the_plugin_hook():
    from gl_plugins import host

    host.reset()
    recipes = host.collect("gl_register_recipes")
    assert {"uniform", "protect", "budget"} <= set(recipes)
    for r in recipes.values():
        assert r.obj.description and callable(r.obj.plan) and all(o.opts for o in r.obj.options)
        assert r.plugin == "gl_plugins.plan.recipes" and r.kind == "recipe"


@pytest.mark.slow
def test_json_document_and_map_file(gl, gemma_f16, tmp_path):
    m = tmp_path / "maps" / "protect.txt"
    m.parent.mkdir()
    code, out, err = gl("plan", gemma_f16, "--recipe", "protect", "--high", "q6_k", "-o", m, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {"bpw", "bytes", "tensors", "command", "plan", "classes", "fallbacks", "needs_imatrix"} <= set(doc)
    assert len(doc["tensors"]) == 236
    assert set(doc["tensors"][0]) == {"name", "type", "reason", "bytes"}
    assert sum(t["bytes"] for t in doc["tensors"]) == doc["bytes"]
    assert doc["params"]["high"] == "Q6_K" and doc["fallbacks"] == []
    cmd = doc["command"]
    assert cmd[-3:] == ["INPUT", "OUTPUT", doc["plan"]["base_type"]]
    assert cmd[cmd.index("--tensor-type-file") + 1] == str(m)
    assert cmd[cmd.index("--token-embedding-type") + 1] == doc["plan"]["token_embedding_type"].lower()
    text = m.read_text()
    assert text == doc["map"]
    assert all(line.startswith("^") and "=" in line and line.split("=")[0].endswith("$")
               for line in text.splitlines())
    # every rule of gl's map names tensors by their full, escaped name: no '.' wildcard outside escapes
    assert all("\\." in line for line in text.splitlines())


@pytest.mark.slow
def test_text_summary_shows_classes_totals_fitting_and_command(gl, gemma_f16):
    code, out, err = gl("plan", gemma_f16, "--recipe", "uniform", "--type", "q2_k", "--verify")
    assert code == 0, err
    assert "recipe uniform" in out and "type=Q2_K" in out
    assert "ffn_down" in out and "not quantized (norms, 1-D)" in out and "total" in out
    assert "Q2_K -> Q4_0" in out  # 640-wide rows cannot hold Q2_K; the map says Q4_0
    assert "falls back in llama-quantize: 0 tensor(s)" in out
    assert "llama-quantize --token-embedding-type q4_0 --tensor-type-file MAP INPUT OUTPUT" in out
    assert "llama-quantize --dry-run agrees on all 236 tensors" in out


@pytest.mark.slow
def test_needs_imatrix_is_said_and_the_command_asks_for_one(gl, gemma_f16):
    code, out, _ = gl("plan", gemma_f16, "--recipe", "protect", "--low", "iq2_xs", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["plan"]["imatrix"] is True
    assert doc["command"][:2] == ["--imatrix", "IMATRIX"]


@pytest.mark.parametrize("args,needle", [
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--recipe", "uniform", "--type", "q9_k"], "unknown ggml type 'q9_k'"),
    (["--recipe", "uniform", "--type", "q8_k"], "cannot produce"),
    (["--recipe", "budget", "--target-bpw", "-1"], "--target-bpw"),
    (["--recipe", "protect", "--edge-layers", "-2"], "--edge-layers"),
])
def test_bad_input_is_one_sentence_exit_2(gl, gemma_q4, args, needle):
    code, out, err = gl("plan", gemma_q4, *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_recipe_and_unwritable_map_exit_2(gl, gemma_q4, tmp_path):
    code, out, err = gl("plan", gemma_q4)
    assert code == 2 and "--recipe" in err
    code, out, err = gl("plan", gemma_q4, "--recipe", "uniform", "--type", "q4_0", "-o", tmp_path / "no" / "m.txt")
    assert code == 2 and "m.txt" in err and len(err.strip().splitlines()) == 1


def test_model_without_tensor_list_is_refused(gl, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
                               "intermediate_size": 14336, "num_hidden_layers": 32,
                               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000}))
    code, out, err = gl("plan", cfg, "--recipe", "uniform", "--type", "q4_k")
    assert code == 2 and "GGUF" in err


def test_help_lists_recipes_and_recipe_options(gl):
    code, out, _ = gl("plan", "--help")
    assert code == 0 and "budget" in out and "protect" in out and "gl plan lint [OPTIONS] MODEL --map MAP" in out
    code, out, _ = gl("plan", "--recipe", "budget", "--help")
    assert code == 0 and "--target-bpw" in out and "--exclude-embeddings" in out
    code, out, _ = gl("plan", "lint", "--help")
    assert code == 0 and "--base-type" in out
