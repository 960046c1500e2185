"""Measure the relative output error of each ggml type, as the ``budget`` recipe uses it.

A synthetic model (``tests/synth.py``: llama, 4 layers, hidden 1024, FFN
2048, Gaussian weights, so every K- and IQ-type fits every row) is quantized
with ``llama-quantize --pure`` to each type, once without and once with an
importance matrix, read back with ``gguf`` and dequantized. The imatrix is
written by this script: per input column a log-normal importance ``m_j``
(sigma 1.5), which stands in for the very uneven activations of real models.
For every tensor the error is

    e_t(T) = sum_ij (W_ij - Q_ij)^2 m_j  /  sum_ij W_ij^2 m_j

(an estimate of ||(W - Q) x||^2 / ||W x||^2 for inputs with those energies), and
the table holds the geometric mean over tensors. Without the imatrix the
quantizer does not know ``m``; with it, llama.cpp weights its fit by ``m`` as it
does with a real imatrix.

Real weights are used nowhere here on purpose: the only real model at hand
(Gemma 3 270M) exists only as Q4_K_M, so its "F16" base is a dequantized
Q4_K_M file on which re-quantizing to Q4_K, Q5_0 or Q6_K is nearly lossless
and would distort the table.

    python bench/quant_error.py [--threads 2]

Prints a table and the Python dict ``gl_plugins.recipes.TYPE_ERROR`` holds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synth: the synthetic-model writer

from gl_plugins.toolchain import llamacpp  # noqa: E402
from gl_plugins.imatrix.formats import OutEntry, read_imatrix, write_gguf  # noqa: E402
from synth import SynthSpec, tensors_for, write_model  # noqa: E402

TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS",
         "IQ3_S", "IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"]
NEEDS_IMATRIX = {"IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"}
FTYPE = {"Q2_K": "Q2_K", "Q3_K": "Q3_K_S", "Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S", "Q6_K": "Q6_K", "Q8_0": "Q8_0",
         "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
         "IQ3_S": "IQ3_S", "IQ3_XXS": "IQ3_XXS", "IQ2_S": "IQ2_M", "IQ2_XS": "IQ2_XS", "IQ2_XXS": "IQ2_XXS",
         "IQ1_M": "IQ1_M", "IQ1_S": "IQ1_S"}


SPEC = SynthSpec(arch="llama", n_layer=4, hidden=1024, ffn=2048, n_head=8, n_head_kv=8, vocab=512,
                 tie_output=False, seed=7)


def make_imatrix(out: Path, seed: int = 11) -> Path:
    """A GGUF imatrix with log-normal column importances for every 2-D block weight of SPEC."""
    rng = np.random.default_rng(seed)
    entries = []
    for name, shape in tensors_for(SPEC):
        if len(shape) != 2 or not name.startswith("blk."):
            continue
        ne0 = shape[-1]
        m = rng.lognormal(0.0, 1.5, ne0).astype(np.float32)
        entries.append(OutEntry(name, 1, ne0, False,
                                lambda m=m: (m[None, :] * 1000.0, np.array([1000.0]), None)))
    write_gguf(out, entries, datasets=["lognormal"], chunk_count=2, chunk_size=500)
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
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gl-quant-error-"))
    base = work / "synth-f16.gguf"
    write_model(base, SPEC)
    imx_path = make_imatrix(work / "imatrix.gguf")
    imx = read_imatrix(imx_path)
    wanted = set(imx.entries)
    ref = weights(base, wanted)
    rows = {}
    for T in TYPES:
        errs = {}
        for use_imatrix in (False, True):
            if T in NEEDS_IMATRIX and not use_imatrix:
                continue
            out = work / f"{T}-{int(use_imatrix)}.gguf"
            # embeddings never have imatrix data, and ggml aborts on IQ2_XXS/IQ2_XS/IQ1_* without it
            args = ["--pure", "--token-embedding-type", "q8_0", "--output-tensor-type", "q8_0"]
            if use_imatrix:
                args += ["--imatrix", imx_path]
            llamacpp.run_tool("llama-quantize", [*args, base, out, FTYPE[T], a.threads])
            q = weights(out, wanted)
            per_tensor, plain = [], []
            for name, (qt, qw) in q.items():
                if qt != T:
                    continue
                m = imx.importance(imx.entries[name])[0].astype(np.float64)
                w = ref[name][1].astype(np.float64)
                d2 = (w - qw) ** 2
                per_tensor.append(float((d2 * m).sum() / ((w ** 2) * m).sum()))
                plain.append(float(d2.sum() / (w ** 2).sum()))
            n = len(per_tensor)
            errs[use_imatrix] = float(np.exp(np.mean(np.log(per_tensor)))) if n else float("nan")
            unweighted = float(np.exp(np.mean(np.log(plain)))) if n else float("nan")
            out.unlink()
            print(f"{T:8s} imatrix={use_imatrix!s:5s} tensors={n:3d} rel.error={errs[use_imatrix]:.3e} "
                  f"(unweighted {unweighted:.3e})", file=sys.stderr)
        rows[T] = (errs.get(False), errs.get(True))
    from gl_plugins.ggml_types import get_type

    print(f"{'type':8s} {'bpw':>6s} {'plain':>10s} {'imatrix':>10s}")
    for T, (p, i) in rows.items():
        fmt = (lambda v: f"{v:10.3e}" if v is not None else f"{'-':>10s}")
        print(f"{T:8s} {get_type(T).bits_per_weight:6.3f} {fmt(p)} {fmt(i)}")
    print("TYPE_ERROR = {")
    for T, (p, i) in rows.items():
        print(f'    "{T}": ({p:.3e}, {i:.3e}),' if p is not None else f'    "{T}": (None, {i:.3e}),')
    print("}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
