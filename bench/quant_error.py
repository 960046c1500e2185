"""Measure the relative output error of each ggml type on real weights (Gemma 3 270M).

For every type the ``budget`` recipe may choose, quantize four layers of the
F16 base with ``llama-quantize --pure`` (the other layers stay F16), read the
result back with ``gguf``, dequantize, and compute the activation-weighted
relative error of every tensor that really got the type:

    e(T) = sum_ij (W_ij - Q_ij)^2 m_j  /  sum_ij W_ij^2 m_j

where ``m_j`` is the mean squared input activation of column ``j`` from an
imatrix (so ``e`` estimates ||(W - Q) x||^2 / ||W x||^2 for real inputs).
Each type is measured twice: quantized without and with the imatrix.

    python bench/quant_error.py [--imatrix FILE] [--threads 2]

Prints a table and the Python dict that ``gl_plugins.recipes.TYPE_ERROR`` holds.
Without ``--imatrix`` one is computed from ``pydoc_data.topics`` text first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gl_plugins import llamacpp  # noqa: E402
from gl_plugins.assets import model_path  # noqa: E402
from gl_plugins.imatrix import read_imatrix  # noqa: E402

TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS",
         "IQ3_S", "IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"]
NEEDS_IMATRIX = {"IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"}
FTYPE = {"Q2_K": "Q2_K", "Q3_K": "Q3_K_S", "Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S", "Q6_K": "Q6_K", "Q8_0": "Q8_0",
         "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
         "IQ3_S": "IQ3_S", "IQ3_XXS": "IQ3_XXS", "IQ2_S": "IQ2_M", "IQ2_XS": "IQ2_XS", "IQ2_XXS": "IQ2_XXS",
         "IQ1_M": "IQ1_M", "IQ1_S": "IQ1_S"}
LAYERS = (0, 6, 11, 17)


def make_imatrix(model: Path, out: Path, threads: int) -> Path:
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[250000:400000]
    src = out.with_suffix(".txt")
    src.write_text(text)
    llamacpp.run_tool("llama-imatrix", ["-m", model, "-f", src, "-o", out, "-t", threads, "-c", 512,
                                        "--chunks", 40])
    return out


def weights(path: Path, names=None) -> dict[str, tuple[str, np.ndarray]]:
    import gguf

    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        if names is not None and t.name not in names:
            continue
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = (t.tensor_type.name, np.asarray(data, dtype=np.float32).reshape(-1, int(t.shape[0])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imatrix")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    base = model_path("gemma3-270m-f16")
    work = Path(tempfile.mkdtemp(prefix="gl-quant-error-"))
    imx_path = Path(a.imatrix) if a.imatrix else make_imatrix(base, work / "imatrix.gguf", a.threads)
    imx = read_imatrix(imx_path)
    keep = "|".join(str(i) for i in LAYERS)
    rule = f"^blk\\.(?!(?:{keep})\\.)=f16"
    ref = None
    rows = {}
    wanted = {n for n in imx.entries if any(n.startswith(f"blk.{i}.") for i in LAYERS)}
    for T in TYPES:
        errs = {}
        for use_imatrix in (False, True):
            if T in NEEDS_IMATRIX and not use_imatrix:
                continue
            out = work / f"{T}-{int(use_imatrix)}.gguf"
            args = ["--pure", "--token-embedding-type", "f16", "--tensor-type", rule]
            if use_imatrix:
                args += ["--imatrix", imx_path]
            llamacpp.run_tool("llama-quantize", [*args, base, out, FTYPE[T], a.threads])
            q = weights(out, wanted)
            if ref is None:
                ref = weights(base, set(q))
            num = den = 0.0
            n = 0
            for name, (qt, qw) in q.items():
                if qt != T or name not in imx.entries:
                    continue
                m = imx.importance(imx.entries[name])[0].astype(np.float64)
                w = ref[name][1].astype(np.float64)
                num += float((((w - qw) ** 2) * m).sum())
                den += float(((w ** 2) * m).sum())
                n += 1
            errs[use_imatrix] = num / den if den else float("nan")
            out.unlink()
            print(f"{T:8s} imatrix={use_imatrix!s:5s} tensors={n:3d} rel.error={errs[use_imatrix]:.3e}",
                  file=sys.stderr)
        rows[T] = (errs.get(False), errs.get(True))
    print(f"{'type':8s} {'bpw':>6s} {'plain':>10s} {'imatrix':>10s}")
    from gl_plugins.ggml_types import get_type

    for T, (p, i) in rows.items():
        fmt = (lambda v: f"{v:10.3e}" if v is not None else f"{'-':>10s}")
        print(f"{T:8s} {get_type(T).bits_per_weight:6.3f} {fmt(p)} {fmt(i)}")
    print("TYPE_ERROR = {")
    for T, (p, i) in rows.items():
        print(f'    "{T}": ({p:.3e}, {i:.3e}),' if p is not None else f'    "{T}": (None, {i:.3e}),')
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
