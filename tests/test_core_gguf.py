"""Reading GGUF headers: the real model, synthetic shapes, split sets, hostile files."""

import json

import pytest

from gl_plugins.errors import InputError
from gl_plugins.facts import load_facts
from gl_plugins.model.gguf_header import read_header
from synth import SynthSpec, write_model
from hostile import refusal_cost, write_corpus


def test_inspect_real_gemma3_270m(gl, gemma_q4):
    code, out, err = gl("inspect", gemma_q4, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["architecture"] == "gemma3"
    assert doc["hidden_size"] == 640
    assert doc["ffn_sizes"] == [2048] * 18
    assert doc["ffn_ratio"] == pytest.approx(3.2)
    assert doc["n_layer"] == 18
    assert doc["global_attention_layers"] == [5, 11, 17]
    assert len(doc["sliding_window_layers"]) == 15
    assert doc["kv_shared_layers"] == []
    assert doc["n_expert"] is None
    assert doc["vocab_size"] == 262144
    assert doc["file_type"] == "Q4_K_M"
    # FACTS.md: llama-quantize reports 7.36 BPW for stock Q4_K_M of this model
    assert doc["bpw"] == pytest.approx(7.36, abs=0.005)
    assert doc["bpw_without_embeddings"] < doc["bpw"]
    assert len(doc["tensors"]) == 236
    emb = next(t for t in doc["tensors"] if t["name"] == "token_embd.weight")
    assert emb["shape"] == [640, 262144] and emb["type"] == "Q8_0"
    assert sum(t["bytes"] for t in doc["tensors"]) == doc["bytes"]


def test_inspect_text_names_types_and_bpw(gl, gemma_q4):
    code, out, _ = gl("inspect", gemma_q4)
    assert code == 0
    assert "hidden size       640" in out
    assert "2048  (ratio 3.20)" in out
    assert "global on 5, 11, 17" in out
    assert "7.358 whole file" in out
    assert "Q8_0" in out and "Q5_0" in out


def test_synthetic_gemma4_kv_shared_and_ple(tmp_path):
    p = tmp_path / "g4.gguf"
    write_model(p, SynthSpec(arch="gemma4", n_layer=6, hidden=256, ffn=[512] * 3 + [1024] * 3,
                             n_kv_shared=3, ple=64))
    f = load_facts(p)
    assert f.architecture == "gemma4"
    assert f.kv_shared_layers == [3, 4, 5]
    assert f.per_layer_embedding == 64
    assert f.ffn_sizes == [512, 512, 512, 1024, 1024, 1024]
    assert f.ffn_ratio == 4.0
    assert f.global_attention_layers == [4]
    assert f.tensor("per_layer_token_embd.weight").shape == (384, 512)


def test_synthetic_moe_facts(tmp_path):
    p = tmp_path / "moe.gguf"
    write_model(p, SynthSpec(arch="qwen3moe", n_layer=2, hidden=256, n_expert=8, n_expert_used=2,
                             expert_ffn=128))
    f = load_facts(p)
    assert (f.n_expert, f.n_expert_used, f.expert_ffn_size) == (8, 2, 128)
    assert f.tensor("blk.0.ffn_up_exps.weight").shape == (256, 128, 8)


def test_split_set_is_one_model(tmp_path, gl):
    files = write_model(tmp_path / "m.gguf", SynthSpec(n_layer=3), split=3)
    assert [f.name for f in files] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    whole = load_facts(files[1])  # any part names the set
    single = tmp_path / "single.gguf"
    write_model(single, SynthSpec(n_layer=3))
    assert sorted(t.name for t in whole.tensors) == sorted(t.name for t in load_facts(single).tensors)
    files[2].unlink()
    code, _, err = gl("inspect", files[0])
    assert code == 2
    assert "missing m-00003-of-00003.gguf" in err


def test_truncated_real_model_is_refused(tmp_path, gl, gemma_q4):
    cut = tmp_path / "cut.gguf"
    with open(gemma_q4, "rb") as f:
        cut.write_bytes(f.read(5_000_000))
    code, out, err = gl("inspect", cut)
    assert code == 2
    assert str(cut) in err and "truncated" in err
    assert "Traceback" not in err and err.count("\n") == 1




def test_hostile_headers_refused_cheaply(tmp_path):
    for name, (path, phrase) in write_corpus(tmp_path).items():
        exc, seconds, peak = refusal_cost(read_header, path)
        assert isinstance(exc, InputError), (name, exc)
        assert phrase in str(exc), (name, str(exc))
        assert str(path) in str(exc)
        assert peak < 50 * 2**20, (name, peak)
        assert seconds < 0.5, (name, seconds)  # typically under 25 ms; generous for shared CI cores


def test_hostile_header_through_cli(tmp_path, gl):
    corpus = write_corpus(tmp_path)
    for name, (path, phrase) in corpus.items():
        code, out, err = gl("inspect", path)
        assert code == 2, name
        assert err.startswith("gl: error: ") and phrase in err and "Traceback" not in err, (name, err)


def test_missing_and_wrong_inputs(tmp_path, gl):
    code, _, err = gl("inspect", tmp_path / "nope.gguf")
    assert code == 2 and "nope.gguf: file not found" in err
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    code, _, err = gl("inspect", bad)
    assert code == 2 and "config.json (line 1): is not valid JSON" in err
    code, _, err = gl("inspect", tmp_path)
    assert code == 2 and "not valid JSON" in err


def test_unknown_tensor_type_is_reported_by_id(tmp_path, gl):
    from hostile import header, kv_string, pad, tensor_info

    p = tmp_path / "new.gguf"
    p.write_bytes(pad(header(1, 1) + kv_string("general.architecture", "llama") +
                      tensor_info("blk.0.ffn_up.weight", (640, 4), 99, 0)) + b"\0" * 4096)
    code, out, err = gl("inspect", p)
    assert code == 0, err
    assert "type#99" in out
    hdr = read_header(p)
    assert hdr.tensors[0].type_name == "type#99" and hdr.tensors[0].nbytes is None


def test_q2_0_type_from_newer_llama_cpp_is_read(tmp_path):
    from hostile import header, kv_string, pad, tensor_info

    p = tmp_path / "q2_0.gguf"
    p.write_bytes(pad(header(1, 1) + kv_string("general.architecture", "llama") +
                      tensor_info("w", (640, 2), 42, 0)) + b"\0" * 512)
    t = read_header(p).tensors[0]
    assert t.type_name == "Q2_0" and t.nbytes == 2 * 10 * 18
