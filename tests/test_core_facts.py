"""Model facts from config.json files, folders and Hugging Face repo ids."""

import json

import pytest

from gl_plugins.errors import GLError
from gl_plugins.facts import load_facts
from model_configs import write_config


@pytest.mark.parametrize("name, arch, hidden, ratio, layers", [
    ("qwen2.5-7b", "qwen2", 3584, 5.29, 28),
    ("mistral-small-2409", "llama", 6144, 2.67, 56),
    ("mistral-7b-v0.3", "llama", 4096, 3.50, 32),
    ("phi-4", "phi3", 5120, 3.50, 40),
    ("gemma3-270m", "gemma3", 640, 3.20, 18),
])
def test_facts_table_models(tmp_path, name, arch, hidden, ratio, layers):
    f = load_facts(write_config(tmp_path / name, name))
    assert (f.architecture, f.hidden_size, f.n_layer) == (arch, hidden, layers)
    assert f.ffn_ratio == pytest.approx(ratio, abs=0.005)
    assert f.kind == "config"


def test_sliding_window_only_where_the_config_uses_it(tmp_path):
    assert load_facts(write_config(tmp_path / "q", "qwen2.5-7b")).sliding_window_layers == []
    assert load_facts(write_config(tmp_path / "m", "mistral-7b-v0.3")).sliding_window_layers == []
    assert load_facts(write_config(tmp_path / "p", "phi-4")).sliding_window_layers == []
    g = load_facts(write_config(tmp_path / "g", "gemma3-270m"))
    assert g.global_attention_layers == [5, 11, 17] and g.sliding_window == 512
    # an older Mistral with a window on every layer
    m1 = load_facts(write_config(tmp_path / "m1", "mistral-7b-v0.3", sliding_window=4096))
    assert m1.sliding_window_layers == list(range(32))


def test_gemma4_e2b_double_wide_kv_shared_layers(tmp_path):
    f = load_facts(write_config(tmp_path / "e2b", "gemma4-e2b"))
    assert f.architecture == "gemma4"
    assert f.kv_shared_layers == list(range(15, 35))
    assert f.ffn_sizes[:15] == [6144] * 15 and f.ffn_sizes[15:] == [12288] * 20
    assert f.ffn_ratios[0] == 4.0 and f.ffn_ratio == 8.0
    assert f.per_layer_embedding == 256
    e4b = load_facts(write_config(tmp_path / "e4b", "gemma4-e4b"))
    assert e4b.kv_shared_layers == list(range(24, 42)) and e4b.ffn_ratio == 4.0


def test_gemma3n_per_layer_list_and_kv_sharing(tmp_path):
    f = load_facts(write_config(tmp_path / "g3n", "gemma3n-e2b"))
    assert f.architecture == "gemma3n" and f.ffn_sizes == [8192] * 30
    assert f.kv_shared_layers == list(range(20, 30)) and f.per_layer_embedding == 256


def test_moe_facts(tmp_path):
    f = load_facts(write_config(tmp_path / "moe", "qwen3-30b-a3b"))
    assert (f.n_expert, f.n_expert_used, f.expert_ffn_size) == (128, 8, 768)


def test_unknown_architecture_gives_generic_facts(tmp_path, gl):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"architectures": ["FancyNewForCausalLM"], "hidden_size": 1000,
                             "intermediate_size": 2500, "num_hidden_layers": 4}))
    code, out, _ = gl("inspect", tmp_path, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["architecture"] == "FancyNewForCausalLM" and doc["ffn_ratio"] == 2.5


def test_config_without_ffn_fields(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 2}))
    f = load_facts(p)
    assert f.ffn_sizes == [] and f.ffn_ratio is None


def _hub_cache(root, repo_id, config: dict):
    """A Hugging Face hub cache holding one repo's config.json, as huggingface_hub lays it out."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hf_repo_id_from_local_cache_offline(tmp_path, gl_proc):
    from model_configs import CONFIGS

    _hub_cache(tmp_path / "hub", "google/gemma-3-270m", CONFIGS["gemma3-270m"])
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = gl_proc("inspect", "hf:google/gemma-3-270m", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["hidden_size"] == 640 and doc["kind"] == "hf" and doc["source"] == "hf:google/gemma-3-270m"
    r = gl_proc("inspect", "google/gemma-3-270m", env=env)
    assert r.returncode == 0 and "ratio 3.20" in r.stdout
    r = gl_proc("inspect", "hf:someone/not-cached", env=env)
    assert r.returncode == 2
    assert "hf:someone/not-cached: config.json is not in the local Hugging Face cache" in r.stderr
    assert "Traceback" not in r.stderr


def test_unreadable_config_is_one_sentence(tmp_path, gl):
    p = tmp_path / "config.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = gl("inspect", p)
    assert code == 2 and str(p) in err and "Traceback" not in err
    with pytest.raises(GLError):
        load_facts(tmp_path / "missing" / "config.json")
