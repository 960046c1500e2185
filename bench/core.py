#!/usr/bin/env python3
"""Core benchmarks: `gl inspect` on a 20 GB sparse GGUF, and a cold `gl --help`.

    python bench/core.py [--size-gb 20] [--runs 5]

The GGUF has a real header (the real Gemma 3 270M's metadata and tensor
directory, with its tensors scaled up to reach the size) and sparse data, so
only header reading can be fast. Targets: inspect < 1 s and < 200 MB RSS;
`gl --help` < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # synth: the synthetic-model writer


def make_sparse_gguf(path: Path, size_gb: float) -> int:
    from gl_plugins.toolchain.samples import provision
    from gl_plugins.ggml_types import TYPES_BY_ID
    from gl_plugins.model.gguf_header import read_header
    from synth import write_sparse

    src = read_header(provision("gemma3-270m"))
    kv = {key: (value.load() if hasattr(value, "load") else value) for key, value in src.kv.items()
          if not key.startswith(("general.architecture", "GGUF."))}
    # scale every layer tensor's row count so the file reaches the size
    scaled = sum(t.nbytes for t in src.tensors if len(t.shape) == 2 and t.name.startswith("blk."))
    fixed = sum(t.nbytes for t in src.tensors) - scaled
    factor = max(1, round((size_gb * 2**30 - fixed) / scaled))
    tensors = []
    for t in src.tensors:
        shape = list(t.shape)
        if len(shape) == 2 and t.name.startswith("blk."):
            shape[1] *= factor
        tensors.append((t.name, shape, TYPES_BY_ID[t.type_id].name))
    return write_sparse(path, src.architecture, tensors, kv)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, max(rss, before) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=20)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    gl = [sys.executable, "-m", "gl_plugins"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sparse-20g.gguf"
        size = make_sparse_gguf(path, args.size_gb)
        used = os.stat(path).st_blocks * 512
        print(f"sparse GGUF: {size / 2**30:.1f} GiB apparent, {used / 2**20:.1f} MiB on disk")
        runs = []
        for _ in range(args.runs):
            # a fresh process each time; RSS measured per child
            r = subprocess.run([sys.executable, "-c", (
                "import resource, subprocess, sys, time\n"
                "t = time.perf_counter()\n"
                f"r = subprocess.run({gl + ['inspect', str(path), '--json']!r}, capture_output=True)\n"
                "dt = time.perf_counter() - t\n"
                "assert r.returncode == 0, r.stderr\n"
                "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")],
                capture_output=True, text=True, check=True)
            dt, rss = map(float, r.stdout.split())
            runs.append((dt, rss))
        wall = statistics.median(d for d, _ in runs)
        rss = max(r for _, r in runs)
        print(f"gl inspect (20 GB sparse): median {wall:.3f} s over {args.runs} runs, peak RSS {rss:.0f} MB "
              f"(targets: < 1 s, < 200 MB) -> {'ok' if wall < 1 and rss < 200 else 'MISSED'}")
    helps = []
    for _ in range(args.runs):
        helps.append(timed(gl + ["--help"])[0])
    h = statistics.median(helps)
    print(f"gl --help: median {h:.3f} s over {args.runs} cold processes (target: < 0.5 s) -> "
          f"{'ok' if h < 0.5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
