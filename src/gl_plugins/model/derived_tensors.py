"""A model's tensor list: the real one from a GGUF, or one derived from config.json widths.

A config.json has no tensor list, but its widths fix the shapes of the
tensors that dominate a quantized file: embeddings, attention projections,
FFN (or expert) matrices, per-layer-embedding tables. They are named as
llama.cpp's converter names them, so llama-quantize's per-tensor logic
(:func:`gl_plugins.plan.resolve`) can be replayed on them. Towers a text
config does not describe (vision, audio) and small arch-specific extras are
left out; results on derived shapes are estimates and say so.
"""

from __future__ import annotations

import dataclasses
import math

from gl_plugins.facts import ModelFacts, Tensor

SOURCE_TYPE = "BF16"  # what a safetensors checkpoint converts to; only sizes the input


def _t(name: str, *shape: int) -> Tensor:
    n = math.prod(shape)
    itemsize = 4 if len(shape) == 1 else 2
    return Tensor(name, tuple(shape), "F32" if len(shape) == 1 else SOURCE_TYPE, n * itemsize)


def missing_widths(facts: ModelFacts) -> list[str]:
    """The facts a derivation needs and lacks."""
    need = (("hidden size", facts.hidden_size), ("layer count", facts.n_layer),
            ("attention head count", facts.n_head), ("vocabulary size", facts.vocab_size))
    out = [what for what, v in need if not v]
    if not facts.ffn_sizes and not (facts.n_expert and facts.expert_ffn_size):
        out.append("FFN width")
    return out


def derive_tensors(facts: ModelFacts) -> list[Tensor]:
    """The weight tensors llama.cpp would hold for a model with these widths (see module doc)."""
    h, n_layer, vocab = facts.hidden_size, facts.n_layer, facts.vocab_size
    hd = facts.head_dim or h // facts.n_head
    q_width, kv_width = facts.n_head * hd, (facts.n_head_kv or facts.n_head) * hd
    out = [_t("token_embd.weight", h, vocab), _t("output_norm.weight", h)]
    tied = facts.tied_embeddings if facts.tied_embeddings is not None else facts.architecture.startswith("gemma")
    if not tied:
        out.append(_t("output.weight", h, vocab))
    ple = facts.per_layer_embedding
    if ple:
        out.append(_t("per_layer_token_embd.weight", ple * n_layer, vocab))
        out.append(_t("per_layer_model_proj.weight", h, ple * n_layer))
    for i in range(n_layer):
        b = f"blk.{i}."
        out += [_t(b + "attn_norm.weight", h), _t(b + "attn_q.weight", h, q_width),
                _t(b + "attn_k.weight", h, kv_width), _t(b + "attn_v.weight", h, kv_width),
                _t(b + "attn_output.weight", q_width, h), _t(b + "ffn_norm.weight", h)]
        if facts.n_expert and facts.expert_ffn_size:
            e, f = facts.n_expert, facts.expert_ffn_size
            out += [_t(b + "ffn_gate_inp.weight", h, e), _t(b + "ffn_gate_exps.weight", h, f, e),
                    _t(b + "ffn_up_exps.weight", h, f, e), _t(b + "ffn_down_exps.weight", f, h, e)]
        else:
            f = facts.ffn_sizes[i]
            out += [_t(b + "ffn_gate.weight", h, f), _t(b + "ffn_up.weight", h, f), _t(b + "ffn_down.weight", f, h)]
        if ple:
            out += [_t(b + "inp_gate.weight", h, ple), _t(b + "proj.weight", ple, h)]
    return out


def with_tensors(facts: ModelFacts) -> tuple[ModelFacts | None, bool]:
    """(facts holding a tensor list, whether that list was derived); (None, True) if it cannot be."""
    if facts.tensors:
        return facts, False
    if missing_widths(facts):
        return None, True
    return dataclasses.replace(facts, tensors=derive_tensors(facts)), True
