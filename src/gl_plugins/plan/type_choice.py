"""llama-quantize's own choice of tensor types, ported from ``src/llama-quant.cpp``.

This is a line-by-line port of the pinned llama.cpp's ``tensor_get_category``,
``llama_tensor_get_type_impl`` (the per-file-type mixtures that make Q2_K,
Q3_K_S, Q4_K_M … more than one type), ``tensor_type_fallback`` and
``tensor_requires_imatrix``. It decides what a plain ``llama-quantize IN OUT FTYPE``
does to each tensor. Counters (``i_attention_wv``, ``i_ffn_down`` …) advance in
llama.cpp's tensor order and only when the mixture is consulted, exactly as there.

Type names are ggml's, upper case (``Q4_K``); file types are llama-quantize's
spelling (``Q4_K_M``). Which tensors may be quantized at all, and the order llama.cpp
visits them in, are tensor-name facts: :mod:`gl_plugins.model.tensors`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gl_plugins.ggml_types import FALLBACK, TYPES_BY_NAME
from gl_plugins.model.tensors import EMBEDDINGS, OUTPUT as OUTPUT_TENSOR, weight_order_key

# ------------------------------------------------------------------ categories

OUTPUT, TOKEN_EMBD, ATTN_QKV, ATTN_KV_B, ATTN_V, ATTN_K, ATTN_Q, ATTN_OUTPUT = (
    "output", "token_embd", "attn_qkv", "attn_kv_b", "attn_v", "attn_k", "attn_q", "attn_output")
FFN_UP, FFN_GATE, FFN_DOWN, OTHER = "ffn_up", "ffn_gate", "ffn_down", "other"


def category(name: str) -> str:
    """llama.cpp's ``tensor_get_category``: substring tests, first hit wins."""
    if name == OUTPUT_TENSOR:
        return OUTPUT
    if name in EMBEDDINGS:
        return TOKEN_EMBD
    for needle, cat in (("attn_qkv.weight", ATTN_QKV), ("attn_kv_b.weight", ATTN_KV_B),
                        ("attn_v.weight", ATTN_V), ("attn_k.weight", ATTN_K), ("attn_q.weight", ATTN_Q),
                        ("attn_output.weight", ATTN_OUTPUT), ("ffn_up", FFN_UP), ("ffn_gate", FFN_GATE),
                        ("ffn_down", FFN_DOWN)):
        if needle in name:
            return cat
    return OTHER


def is_attn_v(cat: str) -> bool:
    return cat in (ATTN_V, ATTN_QKV, ATTN_KV_B)


# ggml_quantize_requires_imatrix: ggml aborts (GGML_ASSERT) quantizing these without importance
# data, whatever llama-quantize's own check let through (it exempts the embeddings and the output).
GGML_REQUIRES_IMATRIX = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S"})


def requires_imatrix(name: str, type_: str, ftype: str) -> bool:
    """``tensor_requires_imatrix``: llama-quantize refuses this type here without an imatrix."""
    if name in EMBEDDINGS or name == OUTPUT_TENSOR:
        return False
    if type_ in ("IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"):
        return True
    return type_ == "Q2_K" and ftype == "Q2_K_S"


def shape_fallback(type_: str, ne0: int) -> str:
    """``tensor_type_fallback``: the type actually used for rows ``ne0`` wide."""
    t = TYPES_BY_NAME[type_]
    if ne0 % t.block_size == 0:
        return type_
    if t.name in FALLBACK or t.name == "Q2_0":
        out = "Q4_0" if t.name == "Q2_0" else FALLBACK[t.name]
    elif t.block_size <= 32:
        out = t.name
    else:
        raise ValueError(f"no tensor type fallback is defined for type {t.name}")
    if ne0 % TYPES_BY_NAME[out].block_size != 0:
        out = "F16"
    return out


# ------------------------------------------------------------------ the mixtures

_70B_LAYERS = {"llama": 80, "deci": 80, "olmo": 80, "qwen2": 80, "jais2": 68}


@dataclass
class ModelParams:
    """The hyperparameters the mixtures look at."""
    arch: str
    n_layer: int
    n_head: int = 0
    n_head_kv: int = 0
    n_expert: int = 0
    has_tied_embeddings: bool = True
    n_attention_wv: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        if _70B_LAYERS.get(self.arch) != self.n_layer:
            return False
        if self.arch == "llama":
            return self.n_expert != 8 and self.n_head != self.n_head_kv
        return True


def model_params(facts, names) -> ModelParams:
    return ModelParams(
        arch=facts.architecture, n_layer=int(facts.n_layer or 0), n_head=int(facts.n_head or 0),
        n_head_kv=int(facts.n_head_kv or 0), n_expert=int(facts.n_expert or 0),
        has_tied_embeddings=OUTPUT_TENSOR not in names,
        n_attention_wv=sum(1 for n in names if is_attn_v(category(n))))


class Mixture:
    """The running state of one ``llama-quantize`` pass (``quantize_state_impl``)."""

    def __init__(self, params: ModelParams, ftype: str, has_imatrix: bool, output_tensor_type: str | None):
        self.p = params
        self.ftype = ftype
        self.has_imatrix = has_imatrix
        self.output_tensor_type = output_tensor_type
        self.i_attention_wv = 0
        self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0

    def _layer_info(self, i: int, name: str) -> tuple[int, int]:
        n_layer = self.p.n_layer
        if max(1, self.p.n_expert) > 1:
            layer = weight_order_key(name)[0]
            if layer < 0:
                raise ValueError(f"Failed to determine layer for tensor {name}")
            if layer >= n_layer:
                raise ValueError(f"Bad layer {layer} for tensor {name}. Must be in [0, {n_layer})")
            return layer, n_layer
        return i, n_layer

    @staticmethod
    def _more_bits(i: int, n: int) -> bool:
        # i >= n/8 when the last test runs, so C's and Python's % agree
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    def choose(self, new_type: str, name: str, shape, cat: str) -> str:
        """``llama_tensor_get_type_impl``: the mixture's type for one tensor."""
        ft, p = self.ftype, self.p
        arch = p.arch
        more = self._more_bits
        iq_low = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")

        if arch == "glm5-next" and ("attn_q_a" in name or "attn_q_b" in name or "nextn.eh_proj" in name):
            if new_type not in ("F32", "BF16", "F16"):
                return "Q8_0"

        if cat == OUTPUT or (p.has_tied_embeddings and cat == TOKEN_EMBD):
            if self.output_tensor_type:
                new_type = self.output_tensor_type
            else:
                nx = shape[0]
                if ft == "MXFP4_MOE":
                    new_type = "Q8_0"
                elif arch == "falcon" or nx % TYPES_BY_NAME[new_type].block_size != 0:
                    new_type = "Q8_0"
                elif ft in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
                    new_type = "Q5_K"
                elif new_type != "Q8_0":
                    new_type = "Q6_K"
        elif ft == "MXFP4_MOE":
            bailing_expert = arch == "bailingmoe3" and cat in (FFN_UP, FFN_GATE, FFN_DOWN)
            ne2 = shape[2] if len(shape) > 2 else 1
            new_type = "MXFP4" if ne2 > 1 and (arch != "bailingmoe3" or bailing_expert) else "Q8_0"
        elif cat == TOKEN_EMBD:
            # --token-embedding-type is decided before the mixture is consulted
            if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                new_type = "Q2_K"
            elif ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                new_type = "IQ3_S"
            elif ft in ("TQ1_0", "TQ2_0", "Q2_0"):
                new_type = "Q4_K"
        elif ft in iq_low:
            if is_attn_v(cat):
                if p.n_gqa >= 4 or p.n_expert >= 4:
                    new_type = "Q4_K"
                else:
                    new_type = "IQ3_S" if ft in ("IQ2_S", "IQ2_M") else "Q2_K"
                self.i_attention_wv += 1
            elif p.n_expert == 8 and cat == ATTN_K:
                new_type = "Q4_K"
            elif cat == FFN_DOWN:
                if self.i_ffn_down < p.n_layer // 8:
                    new_type = "IQ3_S" if ft in ("IQ2_S", "IQ2_M") else "Q2_K"
                self.i_ffn_down += 1
            elif cat == ATTN_OUTPUT:
                if p.n_expert == 8:
                    new_type = "Q5_K"
                elif ft in ("IQ1_S", "IQ1_M"):
                    new_type = "IQ2_XXS"
                elif ft in ("IQ2_S", "IQ2_M"):
                    new_type = "IQ3_S"
        elif is_attn_v(cat):
            gqa = p.n_gqa
            if ft == "Q2_K":
                new_type = "Q4_K" if gqa >= 4 else "Q3_K"
            elif ft == "Q2_K_S" and gqa >= 4:
                new_type = "Q4_K"
            elif ft == "IQ3_XXS":
                new_type = "Q4_K" if gqa >= 4 else ("IQ3_S" if not self.has_imatrix else "IQ3_XXS")
            elif ft in ("IQ3_XS", "IQ3_S") and gqa >= 4:
                new_type = "Q4_K"
            elif ft == "IQ3_M":
                new_type = "Q4_K"
            elif ft == "Q3_K_M":
                new_type = "Q5_K" if self.i_attention_wv < 2 else "Q4_K"
            elif ft == "Q3_K_L":
                new_type = "Q5_K"
            elif ft in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
                new_type = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and more(self.i_attention_wv, p.n_attention_wv):
                new_type = "Q6_K"
            elif ft == "Q4_K_S" and self.i_attention_wv < 4:
                new_type = "Q5_K"
            if p.is_70b and new_type in ("Q3_K", "Q4_K"):
                new_type = "Q5_K"
            if p.n_expert == 8:
                new_type = "Q8_0"
            self.i_attention_wv += 1
        elif cat == ATTN_K:
            if p.n_expert == 8:
                new_type = "Q8_0"
            elif ft == "IQ3_XS":
                new_type = "IQ3_XXS"
            elif ft == "IQ3_XXS":
                new_type = "IQ2_S"
        elif cat == ATTN_Q:
            if ft == "IQ3_XS":
                new_type = "IQ3_XXS"
            elif ft == "IQ3_XXS":
                new_type = "IQ2_S"
        elif cat == FFN_DOWN:
            i_layer, n_layer = self._layer_info(self.i_ffn_down, name)
            if ft == "Q2_K":
                new_type = "Q3_K"
            elif ft == "Q2_K_S":
                if i_layer < n_layer // 8:
                    new_type = "Q4_K"
            elif ft == "IQ3_XXS" and not self.has_imatrix:
                new_type = "Q4_K" if i_layer < n_layer // 8 else "Q3_K"
            elif ft == "Q3_K_M":
                if i_layer < n_layer // 16:
                    new_type = "Q5_K"
                elif arch != "falcon" or more(i_layer, n_layer):
                    new_type = "Q4_K"
                else:
                    new_type = "Q3_K"
            elif ft == "IQ3_M" and (i_layer < n_layer // 8 or (p.n_expert == 8 and more(i_layer, n_layer))):
                new_type = "Q4_K"
            elif ft == "Q3_K_L":
                new_type = "Q4_K" if arch == "falcon" else "Q5_K"
            elif ft == "Q4_K_M":
                if arch == "falcon":
                    new_type = ("Q6_K" if i_layer < n_layer // 16
                                else "Q5_K" if more(i_layer, n_layer) else "Q4_K")
                elif more(i_layer, n_layer):
                    new_type = "Q6_K"
            elif i_layer < n_layer // 8 and ft in ("IQ4_NL", "IQ4_XS") and not self.has_imatrix:
                new_type = "Q5_K"
            elif ft == "Q5_K_M" and more(i_layer, n_layer):
                new_type = "Q6_K"
            elif ft == "Q4_K_S" and arch != "falcon" and i_layer < n_layer // 8:
                new_type = "Q5_K"
            elif ft in ("Q4_0", "Q5_0") and self.has_imatrix and i_layer < n_layer // 8:
                new_type = "Q4_1" if ft == "Q4_0" else "Q5_1"
            self.i_ffn_down += 1
        elif cat == ATTN_OUTPUT:
            if arch != "falcon":
                if p.n_expert == 8:
                    if ft in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M",
                              "IQ3_S", "IQ3_M", "IQ4_XS"):
                        new_type = "Q5_K"
                else:
                    new_type = {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                                "IQ3_M": "Q4_K"}.get(ft, new_type)
            elif ft == "Q3_K_L":
                new_type = "Q4_K"
        elif cat == ATTN_QKV:
            if ft in ("Q3_K_M", "Q3_K_L", "IQ3_M"):
                new_type = "Q4_K"
            elif ft == "Q4_K_M":
                new_type = "Q5_K"
            elif ft == "Q5_K_M":
                new_type = "Q6_K"
        elif cat in (FFN_GATE, FFN_UP):
            i = self.i_ffn_gate if cat == FFN_GATE else self.i_ffn_up
            i_layer, n_layer = self._layer_info(i, name)
            if ft == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
                new_type = "IQ3_XXS"
            if cat == FFN_GATE:
                self.i_ffn_gate += 1
            else:
                self.i_ffn_up += 1
        return new_type

