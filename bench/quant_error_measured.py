#!/usr/bin/env python3
"""Benchmark: the first measurement of per-tensor quantization errors (``gl plan errors``), and a rerun.

    python bench/quant_error_measured.py [--model qwen|7b|both] [--threads 1] [--rows 128]

``qwen``: the real Qwen2.5-Coder-1.5B-Instruct F16 base (``pkg:qwen2.5-coder-1.5b-f16``)
with the imatrix ``gl imatrix make`` computes on gl's calibration text. ``7b``: a
GGUF whose tensors have the widths of Qwen2.5-7B / DeepSeek-R1-Distill-Qwen-7B
(hidden 3584, FFN 18944, 28 layers, 28 heads, 4 KV heads, vocabulary 152064),
each cut to its first 256 rows of Gaussian data (sigma 0.02), without an imatrix;
the time per tensor depends on the row width and the rows sampled, not on the
rows the tensor holds, so the figure is what the real 7B costs.

Each measurement runs ``gl plan errors`` as a real process on an empty
measurement cache (``GL_CACHE`` set to a temporary folder; the tools, found
in ``$GL_LLAMA_CPP`` or gl's build, and the digest cache stay the usual ones), then again to time the cached rerun. Every
type of the budget recipe's candidates is measured. Prints both timings and
gl's table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # model_configs: the 7B config

ROWS_7B = 256


def write_7b_shapes(path: Path) -> Path:
    """A qwen2 GGUF with the 7B's tensor widths, each tensor cut to ``ROWS_7B`` rows of Gaussian F16."""
    import gguf
    import numpy as np

    from gl_plugins.facts import facts_from_config
    from gl_plugins.model.derived_tensors import derive_tensors
    from model_configs import CONFIGS

    facts = facts_from_config(CONFIGS["qwen2.5-7b"], "qwen2.5-7b")
    facts.tied_embeddings = False
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(os.fspath(path), "qwen2")
    w.add_name("qwen2.5-7b-shapes")
    w.add_file_type(1)
    w.add_block_count(facts.n_layer)
    w.add_embedding_length(facts.hidden_size)
    w.add_feed_forward_length(facts.ffn_sizes[0])
    w.add_head_count(facts.n_head)
    w.add_head_count_kv(facts.n_head_kv)
    for t in derive_tensors(facts):
        if len(t.shape) == 1:
            w.add_tensor(t.name, np.ones(t.shape, dtype=np.float32))
            continue
        rows = min(ROWS_7B, t.shape[1])
        w.add_tensor(t.name, (rng.standard_normal((rows, t.shape[0])) * 0.02).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gl_errors(model: Path, imatrix: Path | None, threads: int, rows: int, env: dict) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "gl_plugins", "plan", "errors", os.fspath(model), "--threads", str(threads),
           "--rows", str(rows)] + (["--imatrix", os.fspath(imatrix)] if imatrix else [])
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"gl plan errors failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return seconds, r.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["qwen", "7b", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=128)
    a = ap.parse_args(argv)
    from gl_plugins.digests import cache_file
    from gl_plugins.imatrix.calibrate import make
    from gl_plugins.toolchain.llamacpp import install_dir
    from gl_plugins.toolchain.samples import provision

    with tempfile.TemporaryDirectory(prefix="gl-bench-errors-") as tmp:
        runs = []
        if a.model in ("qwen", "both"):
            model = provision("qwen2.5-coder-1.5b-f16")
            runs.append(("Qwen2.5-Coder-1.5B F16, imatrix from gl imatrix make", model, make(model)))
        if a.model in ("7b", "both"):
            t0 = time.monotonic()
            model = write_7b_shapes(Path(tmp) / "qwen2.5-7b-shapes.gguf")
            print(f"wrote {model.name} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            runs.append(("Qwen2.5-7B shapes (256 Gaussian rows per tensor), no imatrix", model, None))
        for title, model, imatrix in runs:
            env = {**os.environ, "GL_CACHE": os.path.join(tmp, "cache-" + model.stem),
                   "GL_LLAMA_CPP": os.environ.get("GL_LLAMA_CPP") or os.fspath(install_dir() / "bin"), "GL_DIGEST_CACHE": os.fspath(cache_file())}
            first, out = gl_errors(model, imatrix, a.threads, a.rows, env)
            again, _ = gl_errors(model, imatrix, a.threads, a.rows, env)
            print(f"## {title}\n")
            print(f"first measurement: {first:.1f} s on {a.threads} thread(s); cached rerun: {again:.2f} s\n")
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
