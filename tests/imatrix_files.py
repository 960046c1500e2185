"""Imatrix files for the tests: made by the real llama-imatrix, or written here byte by byte.

The writers here are independent of gl's own: GGUF imatrices go through the
``gguf`` package's ``GGUFWriter`` (as llama.cpp's Python tooling writes GGUF),
legacy ones through ``struct`` following llama-imatrix's ``save_imatrix_legacy``.
So a test that reads them checks gl's reader against another implementation.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
from pathlib import Path

import numpy as np

CALIBRATION_CHARS = 12000
IMATRIX_ARGS = ["-c", "128", "--chunks", "4", "-t", "2", "--no-ppl"]


# ------------------------------------------------------------------ independent writers

def write_gguf_imatrix(path, entries: dict, *, datasets=("calibration.txt",), chunk_count=4, chunk_size=128,
                       omit_keys=(), in_sum: dict | None = None, tensor_dtype=np.float32) -> Path:
    """``entries``: name -> (sums with shape (n_mat, ne0), counts of length n_mat)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "unused")
    del w.kv_data[0]["general.architecture"]
    w.add_string("general.type", "imatrix")
    if "imatrix.datasets" not in omit_keys:
        w.add_array("imatrix.datasets", list(datasets))
    if "imatrix.chunk_count" not in omit_keys:
        w.add_uint32("imatrix.chunk_count", chunk_count)
    if "imatrix.chunk_size" not in omit_keys:
        w.add_uint32("imatrix.chunk_size", chunk_size)
    for name, (sums, counts) in sorted(entries.items()):
        sums = np.asarray(sums, dtype=np.float32)
        if sums.ndim == 1:
            sums = sums.reshape(1, -1)
        if in_sum and name in in_sum:
            w.add_tensor(name + ".in_sum", np.asarray(in_sum[name], dtype=np.float32).reshape(sums.shape))
        w.add_tensor(name + ".in_sum2", sums.astype(tensor_dtype))
        w.add_tensor(name + ".counts", np.asarray(counts, dtype=np.float32).reshape(1, -1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def write_dat_imatrix(path, entries: dict, *, chunk_count: int | None = 4, dataset: str = "calibration.txt") -> Path:
    """``entries``: name -> (values, ncall); values are stored as given (mean of squares × ncall)."""
    out = bytearray(struct.pack("<i", len(entries)))
    for name, (values, ncall) in sorted(entries.items()):
        values = np.asarray(values, dtype="<f4").reshape(-1)
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, values.size) + values.tobytes()
    if chunk_count is not None:
        ds = dataset.encode()
        out += struct.pack("<ii", chunk_count, len(ds)) + ds
    Path(path).write_bytes(bytes(out))
    return Path(path)


def forward_pass_entries(facts, *, skip=lambda name: False, seed=0, counts=512) -> dict:
    """What llama-imatrix would collect for a model: every blk.* matrix, per-expert for 3-D ones.

    ``skip(name)`` leaves a weight out (as llama-imatrix does for weights never multiplied).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for t in facts.tensors:
        if not t.name.startswith("blk.") or len(t.shape) < 2 or t.name.endswith("_norm.weight"):
            continue
        if "ffn_gate_inp" in t.name or skip(t.name):
            continue
        ne0 = t.shape[0]
        n_mat = t.shape[2] if len(t.shape) > 2 else 1
        sums = (rng.random((n_mat, ne0), dtype=np.float32) * 50 + 1) * counts
        out[t.name] = (sums, np.full(n_mat, counts, dtype=np.float32))
    return out


# ------------------------------------------------------------------ editing real files

def copy_gguf_imatrix(src, dst, *, drop=()) -> Path:
    """Copy a GGUF imatrix with the gguf package, leaving out the entries named in ``drop``."""
    import gguf

    r = gguf.GGUFReader(str(src))
    entries = {}
    raw = {t.name: np.array(t.data) for t in r.tensors}
    for name in raw:
        if name.endswith(".in_sum2"):
            base = name[:-len(".in_sum2")]
            if base in drop:
                continue
            n_mat = raw[base + ".counts"].size
            entries[base] = (raw[name].reshape(n_mat, -1), raw[base + ".counts"].reshape(-1))
    f = r.fields
    datasets = [bytes(f["imatrix.datasets"].parts[i]).decode() for i in f["imatrix.datasets"].data]
    return write_gguf_imatrix(dst, entries, datasets=datasets,
                              chunk_count=int(f["imatrix.chunk_count"].parts[-1][0]),
                              chunk_size=int(f["imatrix.chunk_size"].parts[-1][0]))


# ------------------------------------------------------------------ the real llama-imatrix

def calibration_text() -> str:
    """A slice of Python's own pydoc topics: English prose present on every Python install."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))[:CALIBRATION_CHARS]


def cache_dir() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    return cache_root() / "test-assets"


def real_imatrix(model: Path, fmt: str) -> Path:
    """An imatrix made by the real llama-imatrix on ``model`` (cached by every input that shapes it).

    Both formats come from the same folder and calibration file, so they record the same dataset.
    """
    from gl_plugins.toolchain.llamacpp import LLAMA_CPP_PYTHON_VERSION, find_tool

    text = calibration_text()
    st = model.stat()
    key = hashlib.sha256("\0".join([LLAMA_CPP_PYTHON_VERSION, model.name, str(st.st_size), str(st.st_mtime_ns),
                                    hashlib.sha256(text.encode()).hexdigest(), *IMATRIX_ARGS])
                         .encode()).hexdigest()[:16]
    folder = cache_dir() / f"imatrix-{key}"
    out = folder / ("imatrix.gguf" if fmt == "gguf" else "imatrix.dat")
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    cal = folder / "calibration.txt"
    cal.write_text(text)
    tmp = folder / (".tmp-" + out.name)
    cmd = [str(find_tool("llama-imatrix")), "-m", str(model), "-f", str(cal), "-o", str(tmp),
           "--output-format", fmt, *IMATRIX_ARGS]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and tmp.exists(), f"llama-imatrix failed: {r.stderr[-2000:]}"
    os.replace(tmp, out)
    return out


def run_quantize(*args, timeout=1800) -> subprocess.CompletedProcess:
    """Run the real llama-quantize (2 threads) and return the finished process."""
    from gl_plugins.toolchain.llamacpp import find_tool

    return subprocess.run([str(find_tool("llama-quantize")), *map(str, args), "2"], capture_output=True,
                          text=True, timeout=timeout)
