"""Tensor-name helpers: layers and roles, what llama-quantize may quantize, and in which order it goes.

Names are llama.cpp's (``blk.3.attn_v.weight``, ``token_embd.weight`` …). :func:`why_not_quantizable`
and :func:`weight_order_key` are ports of ``tensor_allows_quantization`` and ``weight_name_comparer``
in the pinned llama.cpp's ``src/llama-quant.cpp``.
"""

from __future__ import annotations

import re

EMBEDDINGS = ("token_embd.weight", "per_layer_token_embd.weight")  # the token-embedding tables
OUTPUT = "output.weight"
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


def block_of(name: str) -> tuple[int, str] | None:
    """``blk.3.attn_v.weight`` -> ``(3, "attn_v.weight")``; None outside the blocks."""
    m = _BLOCK.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


def layer_of(name: str) -> int | None:
    """The layer a tensor belongs to, or None outside the blocks."""
    b = block_of(name)
    return b[0] if b else None


def role(name: str) -> str:
    """A tensor's role without its layer: ``blk.3.attn_v.weight`` -> ``attn_v``."""
    b = block_of(name)
    base = b[1] if b else name
    return base[:-7] if base.endswith(".weight") else base


def is_ple(name: str) -> bool:
    """Per-layer-embedding tensors (Gemma 3n / Gemma 4)."""
    return name == "per_layer_token_embd.weight" or role(name) in ("inp_gate", "proj")


def layer_ranges(layers, sep: str = ", ") -> str:
    """[15, 16, 17, 20] -> '15–17, 20' (``sep`` between the spans); 'none' for no layers."""
    layers = sorted(set(layers))
    if not layers:
        return "none"
    out, start, prev = [], layers[0], layers[0]
    for x in layers[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(f"{start}" if start == prev else f"{start}\u2013{prev}")
        if x is not None:
            start = prev = x
    return sep.join(out)


_NEVER = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
          "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
          "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
          "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
          "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
          "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
          "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd",
          "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
          "mm.a.code_embd")
_NEVER_GLM5_NEXT = ("hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
                    "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight",
                    "ssm_g_b.weight", "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight",
                    "attn_v_b.weight")


def n_dims(shape) -> int:
    """ggml_n_dims: dimensions up to the last one larger than 1 (at least 1)."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return max(n, 1)


def why_not_quantizable(name: str, shape, arch: str) -> str | None:
    """Why llama-quantize keeps this tensor's type (``tensor_allows_quantization``), or None."""
    if n_dims(shape) < 2:
        return "1-D tensor"
    if not name.endswith("weight"):
        return "name does not end in 'weight'"
    for needle in _NEVER:
        if needle in name:
            return f"name contains {needle!r}"
    if name in ("position_embd.weight", "token_types.weight"):
        return "positional / token-type embedding"
    if arch == "glm5-next":
        for needle in _NEVER_GLM5_NEXT:
            if needle in name:
                return f"name contains {needle!r} (glm5-next)"
    return None


def weight_order_key(name: str):
    """llama.cpp's ``weight_name_comparer``: layer number (-1 outside blocks), then name."""
    layer = -1
    if name.startswith("blk."):
        digits = ""
        for ch in name[4:]:
            if ch.isdigit():
                digits += ch
            else:
                break
        rest = name[4 + len(digits):]
        if digits and rest.startswith("."):
            layer = int(digits)
    return (layer, name)


def quantizable(facts, llama_order: bool = False) -> list:
    """The tensors llama-quantize may change, in the file's order (or in the order it visits them)."""
    out = [t for t in facts.tensors if why_not_quantizable(t.name, t.shape, facts.architecture) is None]
    return sorted(out, key=lambda t: weight_order_key(t.name)) if llama_order else out
