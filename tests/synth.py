"""Synthetic GGUF models, written with ``gguf.GGUFWriter``, that llama-quantize accepts.

They cover shapes the real test model lacks: odd row widths, KV-shared layers
(Gemma 4 style), experts (MoE), per-layer embeddings, split files. Weights are
small random numbers, so the files are tiny but real.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SynthSpec:
    arch: str = "llama"  # llama | gemma3 | gemma4 | qwen3moe
    n_layer: int = 2
    hidden: int = 256
    ffn: int | list[int] = 512
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int | None = None
    vocab: int = 512
    n_kv_shared: int = 0  # gemma4: last N layers reuse an earlier layer's KV cache
    ple: int = 0  # gemma4: per-layer embedding width
    n_expert: int = 0  # qwen3moe
    n_expert_used: int = 2
    expert_ffn: int = 128
    sliding_window: int = 0
    swa_pattern: list[bool] | None = None
    tie_output: bool = True
    dtype: str = "F16"  # F16 | F32
    seed: int = 0
    extra_kv: dict = field(default_factory=dict)

    def ffn_list(self) -> list[int]:
        return list(self.ffn) if isinstance(self.ffn, list) else [self.ffn] * self.n_layer


def _tokens(n: int) -> list[str]:
    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    return special + [f"tok{i}" for i in range(n - len(special))]


def tensors_for(spec: SynthSpec) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor; numpy shape is GGUF's ne reversed."""
    H = spec.hidden
    hd = spec.head_dim or H // spec.n_head
    q, kv = spec.n_head * hd, spec.n_head_kv * hd
    out = [("token_embd.weight", (spec.vocab, H)), ("output_norm.weight", (H,))]
    if not spec.tie_output:
        out.append(("output.weight", (spec.vocab, H)))
    if spec.ple:
        out += [("per_layer_token_embd.weight", (spec.vocab, spec.ple * spec.n_layer)),
                ("per_layer_model_proj.weight", (spec.ple * spec.n_layer, H)),
                ("per_layer_proj_norm.weight", (spec.ple,))]
    for i, ff in enumerate(spec.ffn_list()):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (H,)), (b + "attn_q.weight", (q, H)),
                (b + "attn_k.weight", (kv, H)), (b + "attn_v.weight", (kv, H)),
                (b + "attn_output.weight", (H, q)), (b + "ffn_norm.weight", (H,))]
        if spec.n_expert:
            E, F = spec.n_expert, spec.expert_ffn
            out += [(b + "ffn_gate_inp.weight", (E, H)), (b + "ffn_gate_exps.weight", (E, F, H)),
                    (b + "ffn_up_exps.weight", (E, F, H)), (b + "ffn_down_exps.weight", (E, H, F))]
        else:
            out += [(b + "ffn_gate.weight", (ff, H)), (b + "ffn_up.weight", (ff, H)),
                    (b + "ffn_down.weight", (H, ff))]
        if spec.ple:
            out += [(b + "inp_gate.weight", (spec.ple, H)), (b + "proj.weight", (H, spec.ple)),
                    (b + "post_norm.weight", (H,))]
    return out


def write_model(path: str | os.PathLike, spec: SynthSpec | None = None, *, split: int = 1, **kw) -> list[Path]:
    """Write a synthetic model; with ``split`` > 1 a split set. Returns the files written."""
    import gguf

    spec = spec or SynthSpec(**kw)
    rng = np.random.default_rng(spec.seed)
    path = Path(path)
    tensors = tensors_for(spec)
    parts = [tensors[i::split] for i in range(split)] if split > 1 else [tensors]
    if split > 1:
        stem = path.name[:-5] if path.name.endswith(".gguf") else path.name
        files = [path.with_name(f"{stem}-{i + 1:05d}-of-{split:05d}.gguf") for i in range(split)]
    else:
        files = [path]
    np_dtype = np.float16 if spec.dtype == "F16" else np.float32
    for idx, (file, part) in enumerate(zip(files, parts)):
        w = gguf.GGUFWriter(str(file), spec.arch)
        if idx == 0:
            _write_kv(w, spec)
        else:
            w.add_string("general.name", "gl-synth")
        if split > 1:
            w.add_uint16("split.no", idx)
            w.add_uint16("split.count", split)
            w.add_int32("split.tensors.count", len(tensors))
        for name, shape in part:
            data = (rng.standard_normal(shape) * 0.02).astype(np.float32)
            if len(shape) == 1:
                w.add_tensor(name, np.ones(shape, dtype=np.float32))
            else:
                w.add_tensor(name, data.astype(np_dtype))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return files


def _write_kv(w, spec: SynthSpec) -> None:
    a = spec.arch
    hd = spec.head_dim or spec.hidden // spec.n_head
    w.add_name("gl-synth")
    w.add_file_type(1 if spec.dtype == "F16" else 0)
    w.add_context_length(2048)
    w.add_embedding_length(spec.hidden)
    w.add_block_count(spec.n_layer)
    ffn = spec.ffn_list()
    if len(set(ffn)) == 1:
        w.add_feed_forward_length(ffn[0])
    else:
        w.add_feed_forward_length(ffn)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(spec.vocab)
    if spec.n_expert:
        w.add_expert_count(spec.n_expert)
        w.add_expert_used_count(spec.n_expert_used)
        w.add_expert_feed_forward_length(spec.expert_ffn)
    if a in ("gemma3", "gemma4"):
        window = spec.sliding_window or 512
        w.add_sliding_window(window)
    if a == "gemma4":
        pattern = spec.swa_pattern or [(i % 5) != 4 for i in range(spec.n_layer)]
        w.add_sliding_window_pattern(pattern)
        w.add_shared_kv_layers(spec.n_kv_shared)
        w.add_embedding_length_per_layer_input(spec.ple)
        w.add_key_length_swa(hd)
        w.add_value_length_swa(hd)
    elif spec.swa_pattern is not None:
        w.add_sliding_window_pattern(spec.swa_pattern)
    w.add_tokenizer_model("llama")
    w.add_token_list(_tokens(spec.vocab))
    w.add_token_scores([0.0] * spec.vocab)
    w.add_token_types([1] * spec.vocab)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    for k, v in spec.extra_kv.items():
        add_kv(w, k, v)


def add_kv(w, key: str, value) -> None:
    """Add a metadata value to a ``gguf.GGUFWriter`` with the GGUF type its Python type suggests."""
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value) if 0 <= value < 2**32 else w.add_int64(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    elif isinstance(value, list):
        w.add_array(key, value)
    else:
        raise TypeError(f"{key}: cannot store a {type(value).__name__} in GGUF metadata")


def write_sparse(path: str | os.PathLike, arch: str, tensors, kv: dict | None = None,
                 writer_setup=None) -> int:
    """A GGUF with a real header and sparse (all-zero, unallocated) tensor data; returns its size.

    ``tensors`` holds ``(name, shape ne0 first, ggml type name)``; ``kv`` metadata values
    (see :func:`add_kv`); ``writer_setup(writer)`` may add typed keys itself. For benchmarks
    of header-only work on files far larger than the disk needs to hold.
    """
    import gguf

    from gl_plugins.ggml_types import get_type, tensor_bytes

    w = gguf.GGUFWriter(os.fspath(path), arch)
    if writer_setup is not None:
        writer_setup(w)
    for key, value in (kv or {}).items():
        add_kv(w, key, value)
    data = 0
    for name, shape, type_name in tensors:
        t = get_type(type_name)
        nbytes = tensor_bytes(t, shape)
        # byte shape in numpy order: rows..., bytes per row
        byte_shape = [*reversed(shape[1:]), t.row_bytes(shape[0])]
        w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=gguf.GGMLQuantizationType(t.id))
        data += -(-nbytes // 32) * 32  # each tensor starts at a 32-byte boundary
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(path, "r+b") as f:
        end = f.seek(0, 2)
        f.truncate(end + (-end) % 32 + data)
    return os.path.getsize(path)
