"""The real llama-imatrix on the real Gemma 3 270M, in both output formats.

Story: the user runs llama-imatrix, asks gl what the file holds and whether it
covers the quantization they want; then, with entries missing as in the
Gemma 4 case, gl names the gap, says why, and its rules let llama-quantize
finish a request it otherwise refuses.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gl_plugins.imatrix.formats import read_imatrix
from imatrix_files import copy_gguf_imatrix, real_imatrix, run_quantize

pytestmark = pytest.mark.slow

# Gemma 3 270M: 18 layers × (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down)
N_ENTRIES = 18 * 7


@pytest.fixture(scope="module")
def real(gemma_f16):
    return {fmt: real_imatrix(gemma_f16, fmt) for fmt in ("gguf", "dat")}


def test_both_formats_hold_the_same_data(real, gl):
    g, d = read_imatrix(real["gguf"]), read_imatrix(real["dat"])
    assert (g.format, d.format) == ("gguf", "dat")
    assert len(g.entries) == len(d.entries) == N_ENTRIES
    assert (g.chunk_count, g.chunk_size, d.chunk_count, d.chunk_size) == (4, 128, 4, None)
    assert g.datasets[0].endswith("calibration.txt") and d.datasets == g.datasets
    for name, e in g.entries.items():
        assert e.counts.tolist() == [512]  # 4 chunks × 128 tokens
        assert d.entries[name].counts.tolist() == [4]  # legacy: calls, in chunks
        assert np.allclose(g.importance(e), d.importance(d.entries[name]), rtol=1e-6)
    code, out, _ = gl("imatrix", "info", real["gguf"], "--json")
    doc = json.loads(out)
    assert code == 0 and doc["entries"] == N_ENTRIES and doc["chunk_size"] == 128
    stats = {s["name"]: s for s in doc["stats"]}
    q = stats["blk.0.attn_q.weight"]
    assert q["ne0"] == 640 and q["n_mat"] == 1 and q["nans"] == 0 and 0 < q["min"] <= q["mean"] <= q["max"]
    assert stats["blk.0.ffn_down.weight"]["ne0"] == 2048
    code, out, _ = gl("imatrix", "info", real["dat"])
    assert code == 0 and "legacy .dat imatrix, 126 entries, 4 chunks" in out


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
@pytest.mark.parametrize("quant", [None, "IQ2_XXS", "IQ1_S", "Q2_K_S", "IQ2_M"])
def test_a_real_imatrix_audits_clean(real, gemma_f16, gl, fmt, quant):
    args = ["--quant", quant] if quant else []
    code, out, err = gl("imatrix", "audit", gemma_f16, "--imatrix", real[fmt], *args, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["findings"] == [] and doc["missing"] == []
    cov = doc["coverage"]
    assert cov["covered"] == cov["required"] > 0
    if quant is None:
        assert cov["required"] == N_ENTRIES


def test_convert_gives_what_llama_imatrix_writes(real, tmp_path, gl):
    out = tmp_path / "from-gguf.dat"
    code, _, err = gl("imatrix", "convert", real["gguf"], out)
    assert code == 0, err
    # byte for byte what llama-imatrix --output-format dat wrote from the same run
    assert out.read_bytes() == real["dat"].read_bytes()
    back = tmp_path / "from-dat.gguf"
    code, _, err = gl("imatrix", "convert", real["dat"], back, "--chunk-size", "128")
    assert code == 0, err
    g, b = read_imatrix(real["gguf"]), read_imatrix(back)
    for name, e in g.entries.items():
        assert b.entries[name].counts.tolist() == e.counts.tolist()
        assert np.array_equal(b.entries[name].sums, e.sums)


REMOVED = [f"blk.{i}.attn_output.weight" for i in range(8, 18)] + [f"blk.{i}.ffn_down.weight" for i in range(12, 18)]


def test_removed_entries_are_named_explained_and_pinned(real, gemma_f16, tmp_path, gl):
    cut = copy_gguf_imatrix(real["gguf"], tmp_path / "cut.gguf", drop=set(REMOVED))
    rules = tmp_path / "rules.txt"
    code, out, err = gl("imatrix", "audit", gemma_f16, "--imatrix", cut, "--quant", "IQ2_XXS", "--json",
                        "--emit-rules", rules)
    assert code == 1, err
    doc = json.loads(out)
    assert sorted(doc["missing"]) == sorted(REMOVED)
    assert doc["missing_ranges"] == ["blk.8\u201317.attn_output.weight", "blk.12\u201317.ffn_down.weight"]
    assert [(f["code"], f["tensor"], f["severity"]) for f in doc["findings"]] == [
        ("imatrix-missing-absent", "blk.8\u201317.attn_output.weight", "error"),
        ("imatrix-missing-absent", "blk.12\u201317.ffn_down.weight", "error")]
    assert all("llama-quantize will refuse" in f["message"] and "filtered" in f["message"]
               for f in doc["findings"])
    assert doc["coverage"]["required"] - doc["coverage"]["covered"] == len(REMOVED)
    assert doc["remedy"]["pins"] == {n: "Q2_K" for n in REMOVED}
    assert doc["remedy"]["bpw_after"] > doc["remedy"]["bpw_before"]

    refused = run_quantize("--imatrix", cut, gemma_f16, tmp_path / "refused.gguf", "IQ2_XXS")
    assert refused.returncode != 0
    assert "Missing importance matrix for tensor blk.8.attn_output.weight" in refused.stdout + refused.stderr
    done = run_quantize("--imatrix", cut, "--tensor-type-file", rules, gemma_f16, tmp_path / "ok.gguf", "IQ2_XXS")
    assert done.returncode == 0, done.stderr[-2000:]
    from gl_plugins.model.gguf_header import read_header

    types = {t.name: t.type_name for t in read_header(tmp_path / "ok.gguf").tensors}
    assert {types[n] for n in REMOVED} == {"Q2_K"}
    assert types["blk.7.attn_output.weight"] == "IQ2_XXS"
