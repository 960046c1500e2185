#!/usr/bin/env python3
"""Benchmark: `gl imatrix audit` on a large synthetic MoE imatrix against its model.

    python bench/imatrix_audit.py [--layers 60] [--experts 128] [--width 4096] [--no-in-sum] [--runs 3]

The model is a Qwen3-MoE style GGUF with a real header and sparse data (its
expert tensors alone would take hundreds of GB): 60 layers, 128 experts,
hidden and expert width 4096. The imatrix is a GGUF imatrix with one entry
per weight llama-imatrix collects: per layer 3 expert tensors × 128 experts ×
4096 values of ``in_sum2`` (and of ``in_sum``, as newer llama-imatrix builds
write it), plus the four attention projections; a few experts per layer have
count 0. Targets: under 5 s and peak RSS under 2× the imatrix file size.
Each audit runs in a fresh process with a warm page cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # synth: the synthetic-model writer

import numpy as np

HEAD_DIM, N_HEAD, N_HEAD_KV, VOCAB = 128, 32, 4, 32000


def model_tensors(layers: int, experts: int, width: int):
    """(name, ne shape, ggml type name) of every tensor."""
    q, kv = N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM
    out = [("token_embd.weight", (width, VOCAB), "Q4_K"), ("output_norm.weight", (width,), "F32"),
           ("output.weight", (width, VOCAB), "Q6_K")]
    for i in range(layers):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (width,), "F32"), (b + "attn_q.weight", (width, q), "Q4_K"),
                (b + "attn_k.weight", (width, kv), "Q4_K"), (b + "attn_v.weight", (width, kv), "Q4_K"),
                (b + "attn_output.weight", (q, width), "Q4_K"), (b + "ffn_norm.weight", (width,), "F32"),
                (b + "ffn_gate_inp.weight", (width, experts), "F32"),
                (b + "ffn_gate_exps.weight", (width, width, experts), "Q4_K"),
                (b + "ffn_up_exps.weight", (width, width, experts), "Q4_K"),
                (b + "ffn_down_exps.weight", (width, width, experts), "Q4_K")]
    return out


def write_sparse_model(path: Path, layers: int, experts: int, width: int) -> None:
    from synth import write_sparse

    def header(w):
        w.add_name("bench-moe")
        w.add_file_type(15)
        w.add_block_count(layers)
        w.add_context_length(4096)
        w.add_embedding_length(width)
        w.add_feed_forward_length(width)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_expert_count(experts)
        w.add_expert_used_count(8)
        w.add_expert_feed_forward_length(width)
        w.add_vocab_size(VOCAB)

    write_sparse(path, "qwen3moe", model_tensors(layers, experts, width), writer_setup=header)


def write_imatrix(path: Path, layers: int, experts: int, width: int, in_sum: bool) -> None:
    from gl_plugins.imatrix.formats import OutEntry, write_gguf

    rng = np.random.default_rng(0)
    tokens = 200 * 512

    def expert_data(layer):
        counts = rng.integers(1, tokens // 8, size=experts)
        counts[rng.choice(experts, size=3, replace=False)] = 0  # never routed
        sums = rng.random((experts, width), dtype=np.float32) * counts[:, None]
        return sums, counts, (np.sqrt(sums) if in_sum else None)

    def dense_data(ne0):
        sums = rng.random((1, ne0), dtype=np.float32) * tokens
        return sums, np.array([tokens]), (np.sqrt(sums) if in_sum else None)

    items = []
    for i in range(layers):
        for role in ("attn_q", "attn_k", "attn_v"):
            items.append(OutEntry(f"blk.{i}.{role}.weight", 1, width, in_sum, lambda: dense_data(width)))
        items.append(OutEntry(f"blk.{i}.attn_output.weight", 1, N_HEAD * HEAD_DIM, in_sum,
                              lambda: dense_data(N_HEAD * HEAD_DIM)))
        for role in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            items.append(OutEntry(f"blk.{i}.{role}.weight", experts, width, in_sum,
                                  lambda i=i: expert_data(i)))
    write_gguf(path, items, datasets=["bench.txt"], chunk_count=200, chunk_size=512)


def audit_once(imatrix: Path, model: Path, quant: str | None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (bytes) and exit status of one `gl imatrix audit` process."""
    cmd = [sys.executable, "-m", "gl_plugins", "imatrix", "audit", str(model), "--imatrix", str(imatrix), "--json"]
    if quant:
        cmd += ["--quant", quant]
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter()\n"
             f"r = subprocess.run({cmd!r}, capture_output=True, text=True)\n"
             "dt = time.perf_counter() - t\n"
             "assert r.returncode in (0, 1), r.stderr\n"
             "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, r.returncode)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    dt, rss, code = r.stdout.split()
    return float(dt), float(rss), int(code)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=60)
    ap.add_argument("--experts", type=int, default=128)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--no-in-sum", action="store_true", help="write in_sum2 and counts only")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", help="where to write the files (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        model, imx = Path(tmp) / "moe.gguf", Path(tmp) / "moe.imatrix.gguf"
        write_sparse_model(model, args.layers, args.experts, args.width)
        write_imatrix(imx, args.layers, args.experts, args.width, not args.no_in_sum)
        size = os.path.getsize(imx)
        print(f"imatrix: {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB), {args.layers} layers × 3 expert tensors × "
              f"{args.experts} experts × {args.width} floats{'' if args.no_in_sum else ' (in_sum2 and in_sum)'}; "
              f"model: {os.path.getsize(model) / 2**30:.0f} GiB apparent, sparse")
        ok = True
        for quant in ("IQ2_XXS", None):
            runs = [audit_once(imx, model, quant) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            good = wall < 5 and rss < 2 * size
            ok &= good
            print(f"gl imatrix audit --quant {quant or '(none)'}: median {wall:.2f} s over {args.runs} runs, "
                  f"peak RSS {rss / 2**20:.0f} MiB = {rss / size:.2f}× the file, exit {runs[0][2]} "
                  f"(targets: < 5 s, < 2× file) -> {'ok' if good else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
