"""Property: converting an imatrix .dat → GGUF → .dat (and GGUF → .dat → GGUF) keeps what llama-quantize uses.

Sources are written by the independent writers in tests/imatrix_files.py;
conversion and reading are gl's. What must survive: the entry names, the
importance llama-quantize derives (to float32 rounding), the call counts,
the chunk count and the dataset name.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gl_plugins.imatrix.formats import convert, read_imatrix
from imatrix_files import write_dat_imatrix, write_gguf_imatrix

EXAMPLES = max(10, int(os.environ.get("GL_FUZZ_EXAMPLES", "150")) // 3)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_names = st.builds(lambda i, role: f"blk.{i}.{role}.weight", st.integers(0, 99),
                   st.sampled_from(["attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_gate", "ffn_down"]))
_values = st.integers(1, 64).flatmap(
    lambda n: st.lists(st.floats(0.0009765625, 16384.0, width=32), min_size=n, max_size=n))
_dataset = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)


def _close(a, b):
    return np.allclose(a.reshape(-1), b.reshape(-1), rtol=2e-6, atol=0)


@SETTINGS
@given(st.dictionaries(_names, st.tuples(_values, st.integers(1, 10_000)), min_size=1, max_size=6),
       st.integers(0, 100_000), _dataset, st.integers(1, 4096))
def test_dat_to_gguf_to_dat_keeps_importance_calls_and_trailer(tmp_path_factory, entries, chunks, dataset, chunk_size):
    tmp = tmp_path_factory.mktemp("rt")
    src = read_imatrix(write_dat_imatrix(tmp / "a.dat", entries, chunk_count=chunks, dataset=dataset))
    convert(src, tmp / "a.gguf", "gguf", chunk_size)
    mid = read_imatrix(tmp / "a.gguf")
    assert (mid.chunk_size, mid.chunk_count, mid.datasets, mid.missing_keys) == (chunk_size, chunks, [dataset], [])
    convert(mid, tmp / "b.dat", "dat")
    back = read_imatrix(tmp / "b.dat")
    assert list(back.entries) == list(src.entries)
    assert (back.chunk_count, back.datasets) == (chunks, [dataset])
    for name, e in src.entries.items():
        assert back.entries[name].counts.tolist() == e.counts.tolist()
        assert _close(src.importance(e), mid.importance(mid.entries[name]))
        assert _close(src.importance(e), back.importance(back.entries[name]))


@SETTINGS
@given(st.dictionaries(_names, st.tuples(st.integers(1, 4), st.integers(1, 32), st.integers(1, 50)),
                       min_size=1, max_size=5),
       st.integers(1, 1024), st.integers(0, 2**31 - 1))
def test_gguf_to_dat_to_gguf_keeps_importance(tmp_path_factory, shapes, chunk_size, seed):
    tmp = tmp_path_factory.mktemp("rt")
    rng = np.random.default_rng(seed)
    entries = {}
    for name, (n_mat, ne0, chunks) in shapes.items():
        counts = np.full(n_mat, chunks * chunk_size, dtype=np.float32)  # every expert routed in every chunk
        entries[name] = ((rng.random((n_mat, ne0), dtype=np.float32) + 0.01) * counts[:, None], counts)
    src = read_imatrix(write_gguf_imatrix(tmp / "a.gguf", entries, chunk_count=50, chunk_size=chunk_size))
    convert(src, tmp / "a.dat", "dat")
    convert(read_imatrix(tmp / "a.dat"), tmp / "b.gguf", "gguf", chunk_size)
    back = read_imatrix(tmp / "b.gguf")
    assert set(back.entries) == set(src.entries) and back.chunk_size == chunk_size
    for name, e in src.entries.items():
        assert _close(src.importance(e), back.importance(back.entries[name]))
