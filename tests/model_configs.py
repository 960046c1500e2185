"""config.json files for the models in FACTS.md, written from its table."""

from __future__ import annotations

import json
from pathlib import Path

CONFIGS = {
    "qwen2.5-7b": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
                   "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                   "num_key_value_heads": 4, "sliding_window": 131072, "use_sliding_window": False,
                   "vocab_size": 152064},
    "mistral-small-2409": {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                           "hidden_size": 6144, "intermediate_size": 16384, "num_hidden_layers": 56,
                           "num_attention_heads": 48, "num_key_value_heads": 8, "sliding_window": None,
                           "vocab_size": 32768},
    "mistral-7b-v0.3": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
                        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 8, "sliding_window": None, "vocab_size": 32768},
    "phi-4": {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 5120,
              "intermediate_size": 17920, "num_hidden_layers": 40, "num_attention_heads": 40,
              "num_key_value_heads": 10, "sliding_window": None, "vocab_size": 100352},
    "gemma3-270m": {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 640,
                    "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
                    "num_key_value_heads": 1, "sliding_window": 512,
                    "layer_types": ["full_attention" if i % 6 == 5 else "sliding_attention" for i in range(18)],
                    "vocab_size": 262144},
    "gemma3n-e2b": {"architectures": ["Gemma3nForConditionalGeneration"], "model_type": "gemma3n",
                    "text_config": {"model_type": "gemma3n_text", "hidden_size": 2048,
                                    "intermediate_size": [8192] * 30, "num_hidden_layers": 30,
                                    "num_attention_heads": 8, "num_key_value_heads": 2,
                                    "num_kv_shared_layers": 10, "hidden_size_per_layer_input": 256,
                                    "sliding_window": 512,
                                    "layer_types": ["full_attention" if i % 5 == 4 else "sliding_attention"
                                                    for i in range(30)],
                                    "vocab_size": 262400}},
    "gemma4-e2b": {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4",
                   "text_config": {"model_type": "gemma4_text", "hidden_size": 1536, "intermediate_size": 6144,
                                   "num_hidden_layers": 35, "num_attention_heads": 8, "num_key_value_heads": 1,
                                   "num_kv_shared_layers": 20, "use_double_wide_mlp": True,
                                   "hidden_size_per_layer_input": 256, "sliding_window": 512,
                                   "layer_types": ["full_attention" if i % 5 == 4 else "sliding_attention"
                                                   for i in range(35)],
                                   "vocab_size": 262144}},
    "gemma4-e4b": {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4",
                   "text_config": {"model_type": "gemma4_text", "hidden_size": 2560, "intermediate_size": 10240,
                                   "num_hidden_layers": 42, "num_attention_heads": 8, "num_key_value_heads": 2,
                                   "num_kv_shared_layers": 18, "hidden_size_per_layer_input": 256,
                                   "sliding_window": 512,
                                   "layer_types": ["full_attention" if i % 6 == 5 else "sliding_attention"
                                                   for i in range(42)],
                                   "vocab_size": 262144}},
    "qwen3-30b-a3b": {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
                      "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
                      "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_attention_heads": 32,
                      "num_key_value_heads": 4, "vocab_size": 151936},
}


def write_config(folder: Path, name: str, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(CONFIGS[name]))
    cfg.update(overrides)
    path = folder / "config.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path
