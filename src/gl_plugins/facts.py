"""Model facts: what gl knows about a model before any work is done.

``load_facts(source)`` turns a GGUF file (or split set), a ``config.json``
(or a folder holding one), a Hugging Face repo id (``hf:org/name`` or
``org/name``; only ``config.json`` is fetched) or a model shipped in a Python
package (``pkg:gemma3-270m``) into one :class:`ModelFacts`. GGUFs are read
header-only.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gl_plugins.errors import GLError, InputError, read_text_input


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]  # ne0 first, as GGUF stores it
    type: str  # ggml type name, or "type#N" for an id gl does not know
    bytes: int | None  # None when the type is unknown

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class ModelFacts:
    source: str
    kind: str  # "gguf" | "config" | "hf"
    architecture: str
    hidden_size: int | None = None
    ffn_sizes: list[int] = field(default_factory=list)  # one per layer; empty if unknown
    n_layer: int | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    sliding_window: int | None = None
    sliding_window_layers: list[int] = field(default_factory=list)
    kv_shared_layers: list[int] = field(default_factory=list)
    per_layer_embedding: int | None = None  # PLE width per layer (Gemma 3n/4)
    head_dim: int | None = None  # attention head width (config head_dim, GGUF attention.key_length)
    tied_embeddings: bool | None = None  # output projection reuses token_embd; None: not known
    n_expert: int | None = None
    n_expert_used: int | None = None
    expert_ffn_size: int | None = None
    nextn_layers: int = 0
    vocab_size: int | None = None
    file_type: str | None = None  # llama-quantize spelling, GGUF only
    name: str | None = None
    chat_template: str | None = None
    tensors: list[Tensor] = field(default_factory=list)

    @property
    def global_attention_layers(self) -> list[int]:
        if not self.sliding_window_layers or self.n_layer is None:
            return []
        swa = set(self.sliding_window_layers)
        return [i for i in range(self.n_layer) if i not in swa]

    @property
    def ffn_ratios(self) -> list[float]:
        if not self.hidden_size:
            return []
        return [round(f / self.hidden_size, 4) for f in self.ffn_sizes]

    @property
    def ffn_ratio(self) -> float | None:
        r = self.ffn_ratios
        return max(r) if r else None

    def tensor(self, name: str) -> Tensor | None:
        for t in self.tensors:
            if t.name == name:
                return t
        return None

    def to_dict(self, with_tensors: bool = True) -> dict:
        d = asdict(self)
        d["ffn_ratio"] = self.ffn_ratio
        d["ffn_ratios"] = self.ffn_ratios
        d["global_attention_layers"] = self.global_attention_layers
        if not with_tensors:
            d.pop("tensors")
        d.pop("chat_template")
        return d


# ---------------------------------------------------------------- helpers

def swa_layers_from_pattern(n_layer: int, pattern: int, dense_first: bool = False) -> list[int]:
    """llama.cpp's ``set_swa_pattern``: which layers use the sliding window."""
    out = []
    for il in range(n_layer):
        if dense_first:
            swa = pattern == 0 or il % pattern != 0
        else:
            swa = pattern == 0 or il % pattern < pattern - 1
        if swa:
            out.append(il)
    return out


# llama.cpp's default sliding-window pattern per architecture when the file holds none
_DEFAULT_SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4}
# Gemma 3n: layers from 20 on reuse an earlier layer's KV cache (llama.cpp hard-codes it)
_GEMMA3N_KV_FROM = 20


MAX_LAYERS = 10_000  # far above any real model; a larger count is a corrupt or hostile file


def _layer_count(v, source: str, what: str) -> int | None:
    n = _as_int(v)
    if n is not None and not 0 < n <= MAX_LAYERS:
        raise InputError(source, f"{what} is {n}, not a plausible layer count (1 to {MAX_LAYERS})")
    return n


def _as_int(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _per_layer(value, n_layer: int | None, what: str, source: str) -> list[int]:
    if value is None or n_layer is None:
        return []
    if isinstance(value, list) or hasattr(value, "load"):
        vals = value.load() if hasattr(value, "load") else value
        ints = [_as_int(v) for v in vals]
        if any(v is None for v in ints) or len(ints) != n_layer:
            raise InputError(source, f"{what} must hold {n_layer} whole numbers, one per layer")
        return ints
    v = _as_int(value)
    if v is None:
        raise InputError(source, f"{what} is {value!r}, not a whole number")
    return [v] * n_layer


# ---------------------------------------------------------------- GGUF

def facts_from_gguf(path: str | os.PathLike) -> ModelFacts:
    from gl_plugins.ggml_types import ftype_name
    from gl_plugins.model.gguf_header import read_header

    h = read_header(path)
    arch = h.architecture
    if not isinstance(arch, str):
        if h.get("general.type") == "imatrix":
            raise InputError(path, "is an imatrix file, not a model")
        raise InputError(path, "has no general.architecture key; not a model GGUF")
    g = h.arch_get
    n_layer = _layer_count(g("block_count"), h.path, f"{arch}.block_count")
    hidden = _as_int(g("embedding_length"))
    ffn = _per_layer(g("feed_forward_length"), n_layer, f"{arch}.feed_forward_length", h.path)
    n_expert = _as_int(g("expert_count")) or None
    facts = ModelFacts(
        source=os.fspath(path), kind="gguf", architecture=arch, hidden_size=hidden,
        ffn_sizes=ffn, n_layer=n_layer,
        n_head=_first_int(g("attention.head_count")), n_head_kv=_first_int(g("attention.head_count_kv")),
        n_expert=n_expert, n_expert_used=_as_int(g("expert_used_count")) if n_expert else None,
        expert_ffn_size=_first_int(g("expert_feed_forward_length")) if n_expert else None,
        nextn_layers=_as_int(g("nextn_predict_layers")) or 0,
        per_layer_embedding=_as_int(g("embedding_length_per_layer_input")) or None,
        head_dim=_first_int(g("attention.key_length")),
        file_type=ftype_name(_as_int(h.get("general.file_type"))),
        name=h.get("general.name") if isinstance(h.get("general.name"), str) else None,
        chat_template=h.get("tokenizer.chat_template") if isinstance(h.get("tokenizer.chat_template"), str) else None,
    )
    tokens = h.get("tokenizer.ggml.tokens")
    facts.vocab_size = _as_int(g("vocab_size")) or (len(tokens) if tokens is not None else None)
    # sliding window
    window = _as_int(g("attention.sliding_window"))
    pattern = g("attention.sliding_window_pattern")
    if n_layer:
        if isinstance(pattern, list) or hasattr(pattern, "load"):
            flags = pattern.load() if hasattr(pattern, "load") else pattern
            facts.sliding_window_layers = [i for i, f in enumerate(flags[:n_layer]) if f]
        elif window:
            p = _as_int(pattern) or _DEFAULT_SWA_PATTERN.get(arch, 0)
            facts.sliding_window_layers = swa_layers_from_pattern(n_layer, p)
        facts.sliding_window = window if facts.sliding_window_layers else None
        shared = _as_int(g("attention.shared_kv_layers"))
        if shared and 0 < shared <= n_layer:
            facts.kv_shared_layers = list(range(n_layer - shared, n_layer))
        elif arch == "gemma3n":
            facts.kv_shared_layers = list(range(_GEMMA3N_KV_FROM, n_layer))
    facts.tensors = [Tensor(t.name, t.shape, t.type_name, t.nbytes) for t in h.tensors]
    facts.tied_embeddings = not any(t.name == "output.weight" for t in facts.tensors)
    return facts


def _first_int(v) -> int | None:
    if isinstance(v, list):
        v = v[0] if v else None
    return _as_int(v)


# ---------------------------------------------------------------- config.json

# HF architecture class -> llama.cpp architecture name
_HF_ARCH = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "Qwen2MoeForCausalLM": "qwen2moe", "Qwen3MoeForCausalLM": "qwen3moe",
    "Phi3ForCausalLM": "phi3", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3", "Gemma3nForConditionalGeneration": "gemma3n",
    "Gemma3nForCausalLM": "gemma3n", "Gemma4ForConditionalGeneration": "gemma4",
    "Gemma4ForCausalLM": "gemma4", "MixtralForCausalLM": "llama",
}
_MODEL_TYPE_ARCH = {
    "llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe", "phi3": "phi3", "gemma2": "gemma2",
    "gemma3": "gemma3", "gemma3_text": "gemma3", "gemma3n": "gemma3n", "gemma3n_text": "gemma3n",
    "gemma4": "gemma4", "gemma4_text": "gemma4",
}


def facts_from_config(cfg: dict, source: str, kind: str = "config") -> ModelFacts:
    if not isinstance(cfg, dict):
        raise InputError(source, "config.json must hold a JSON object")
    top = cfg
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**{k: v for k, v in cfg.items() if k != "text_config"}, **cfg["text_config"]}
    archs = top.get("architectures") or []
    arch = None
    if isinstance(archs, list):
        arch = next((_HF_ARCH[a] for a in archs if isinstance(a, str) and a in _HF_ARCH), None)
    if arch is None:
        mt = cfg.get("model_type") or top.get("model_type")
        arch = _MODEL_TYPE_ARCH.get(mt, str(mt or (archs[0] if archs else "unknown")))

    def num(*keys):
        for k in keys:
            v = _as_int(cfg.get(k))
            if v is not None:
                return v
        return None

    n_layer = _layer_count(num("num_hidden_layers", "n_layer", "num_layers"), source, "num_hidden_layers")
    hidden = num("hidden_size", "n_embd", "d_model")
    ff_raw = cfg.get("intermediate_size", cfg.get("ffn_dim", cfg.get("n_inner")))
    try:
        ffn = _per_layer(ff_raw, n_layer, "intermediate_size", source)
    except InputError:
        ffn = []
    n_shared = num("num_kv_shared_layers") or 0
    if n_layer is None or not 0 <= n_shared <= n_layer:
        n_shared = 0
    if arch == "gemma3n" and n_layer and not n_shared:
        n_shared = max(n_layer - _GEMMA3N_KV_FROM, 0)
    if cfg.get("use_double_wide_mlp") and ffn and n_layer and n_shared:
        first = n_layer - n_shared
        ffn = [f if i < first else f * 2 for i, f in enumerate(ffn)]
    n_expert = num("num_local_experts", "num_experts", "n_routed_experts")
    facts = ModelFacts(
        source=source, kind=kind, architecture=arch, hidden_size=hidden, ffn_sizes=ffn,
        n_layer=n_layer, n_head=num("num_attention_heads"),
        n_head_kv=num("num_key_value_heads") or num("num_attention_heads"),
        n_expert=n_expert or None,
        n_expert_used=num("num_experts_per_tok") if n_expert else None,
        expert_ffn_size=num("moe_intermediate_size", "expert_intermediate_size") if n_expert else None,
        nextn_layers=num("num_nextn_predict_layers") or 0,
        per_layer_embedding=num("hidden_size_per_layer_input") or None,
        head_dim=num("head_dim"),
        tied_embeddings=cfg.get("tie_word_embeddings") if isinstance(cfg.get("tie_word_embeddings"), bool) else None,
        vocab_size=num("vocab_size"),
        name=top.get("_name_or_path") if isinstance(top.get("_name_or_path"), str) else None,
    )
    if n_layer:
        facts.kv_shared_layers = list(range(n_layer - n_shared, n_layer)) if n_shared else []
        facts.sliding_window_layers, facts.sliding_window = _config_swa(cfg, arch, n_layer)
    return facts


def _config_swa(cfg: dict, arch: str, n_layer: int) -> tuple[list[int], int | None]:
    window = _as_int(cfg.get("sliding_window"))
    if cfg.get("use_sliding_window") is False:  # Qwen2 carries a window it never uses
        return [], None
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == n_layer:
        layers = [i for i, t in enumerate(layer_types) if t == "sliding_attention"]
        return layers, (window if layers else None)
    if not window:
        return [], None
    pattern = _as_int(cfg.get("sliding_window_pattern"))
    if pattern is None:
        pattern = _DEFAULT_SWA_PATTERN.get(arch, 0)
    return swa_layers_from_pattern(n_layer, pattern), window


def _read_config(path: Path) -> ModelFacts:
    text = read_text_input(path, "a config.json file")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"is not valid JSON: {e.msg}", line=e.lineno) from None
    return facts_from_config(cfg, os.fspath(path))


# ---------------------------------------------------------------- Hugging Face

HF_ID_RE = re.compile(r"^(?:hf:)?(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<rev>[\w./-]+))?$")


def _hf_config(repo_id: str, revision: str | None) -> ModelFacts:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision)
    except LocalEntryNotFoundError:
        raise GLError(f"hf:{repo_id}: config.json is not in the local Hugging Face cache and the hub "
                      f"cannot be reached (offline mode or no network)") from None
    except RepositoryNotFoundError:
        raise GLError(f"hf:{repo_id}: no such repository on the Hugging Face hub (or it needs a token)") from None
    except RevisionNotFoundError:
        raise GLError(f"hf:{repo_id}: revision {revision!r} not found") from None
    except EntryNotFoundError:
        raise GLError(f"hf:{repo_id}: the repository has no config.json") from None
    except OSError as e:
        raise GLError(f"hf:{repo_id}: config.json could not be fetched ({type(e).__name__})") from None
    facts = _read_config(Path(path))
    facts.source, facts.kind = f"hf:{repo_id}", "hf"
    return facts


# ---------------------------------------------------------------- entry point

def load_facts(source: str | os.PathLike) -> ModelFacts:
    """Model facts from a GGUF, a config.json (or its folder), ``pkg:NAME`` or a HF repo id."""
    s = os.fspath(source)
    if s.startswith("pkg:"):
        from gl_plugins.toolchain.samples import local_model
        return facts_from_gguf(local_model(s))
    p = Path(s)
    if p.is_dir():
        cfg = p / "config.json"
        ggufs = sorted(p.glob("*.gguf"))
        if cfg.exists():
            return _read_config(cfg)
        if len(ggufs) == 1:
            return facts_from_gguf(ggufs[0])
        raise InputError(p, "folder holds no config.json (and not exactly one GGUF)")
    if p.suffix == ".json":
        return _read_config(p)
    if p.exists() or p.suffix == ".gguf":
        return facts_from_gguf(p)
    m = HF_ID_RE.match(s)
    if m and not s.startswith((".", "/")):
        return _hf_config(m["repo"], m["rev"])
    raise InputError(s, "file not found (and not a Hugging Face repo id like org/name)")
