"""Reading, describing and converting imatrix files written by an independent writer.

Story: a user has an imatrix from somewhere (GGUF or legacy .dat, perhaps from
a MoE model, perhaps damaged); `gl imatrix info` shows what it holds, bad files
end in one sentence naming the byte, `gl imatrix convert` moves between formats.
"""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest

from gl_plugins.errors import InputError
from gl_plugins.imatrix.formats import convert, read_imatrix
from imatrix_files import write_dat_imatrix, write_gguf_imatrix

NE0, N_EXP = 256, 8


def moe_entries():
    """Two expert tensors (8 experts, experts 2 and 5 never routed) and one dense tensor."""
    rng = np.random.default_rng(1)
    counts = np.array([40, 12, 0, 7, 30, 0, 9, 30], dtype=np.float32)
    sums = (rng.random((N_EXP, NE0), dtype=np.float32) + 0.5) * counts[:, None]
    dense = rng.random((1, NE0), dtype=np.float32) * 128
    return {"blk.0.ffn_up_exps.weight": (sums, counts), "blk.0.ffn_gate_exps.weight": (sums * 2, counts),
            "blk.0.attn_q.weight": (dense, np.array([128], dtype=np.float32))}


@pytest.fixture
def moe_gguf(tmp_path):
    e = moe_entries()
    return write_gguf_imatrix(tmp_path / "moe.gguf", e, datasets=["a.txt", "b.txt"], chunk_count=1,
                              chunk_size=128, in_sum={"blk.0.attn_q.weight": np.ones((1, NE0))})


def test_gguf_moe_reads_per_expert_counts_memory_mapped(moe_gguf):
    imx = read_imatrix(moe_gguf)
    assert imx.format == "gguf" and imx.datasets == ["a.txt", "b.txt"]
    assert (imx.chunk_count, imx.chunk_size, imx.missing_keys) == (1, 128, [])
    e = imx.entries["blk.0.ffn_up_exps.weight"]
    assert e.sums.shape == (N_EXP, NE0)
    assert e.counts.tolist() == [40, 12, 0, 7, 30, 0, 9, 30]
    # values are views of the file, not copies
    assert not e.sums.flags.owndata and not e.sums.flags.writeable
    expected = moe_entries()["blk.0.ffn_up_exps.weight"][0]
    assert np.array_equal(e.sums, expected)
    imp = imx.importance(e)
    assert np.allclose(imp[0], expected[0] / 40) and (imp[2] == 1).all()  # count 0 -> 1, as llama-quantize
    assert imx.entries["blk.0.attn_q.weight"].in_sum is not None
    assert imx.entries["blk.0.ffn_up_exps.weight"].in_sum is None


def test_dat_reads_values_calls_and_trailer(tmp_path):
    v = np.arange(1, 257, dtype=np.float32)
    p = write_dat_imatrix(tmp_path / "x.dat", {"blk.0.attn_q.weight": (v * 3, 3), "blk.0.attn_k.weight": (v, 1)},
                          chunk_count=3, dataset="wiki.txt")
    imx = read_imatrix(p)
    assert imx.format == "dat" and imx.datasets == ["wiki.txt"] and imx.chunk_count == 3
    assert imx.chunk_size is None
    e = imx.entries["blk.0.attn_q.weight"]
    assert e.counts.tolist() == [3] and np.array_equal(imx.importance(e)[0], v)
    # the trailer is optional
    p2 = write_dat_imatrix(tmp_path / "y.dat", {"blk.0.attn_q.weight": (v, 1)}, chunk_count=None)
    imx2 = read_imatrix(p2)
    assert imx2.chunk_count is None and imx2.datasets == []


def test_info_json_shows_expert_counts_zero_and_nan(tmp_path, gl):
    e = moe_entries()
    sums, counts = e["blk.0.attn_q.weight"]
    sums = sums.copy()
    sums[0, :3] = [np.nan, np.inf, 0.0]
    e["blk.0.attn_q.weight"] = (sums, counts)
    p = write_gguf_imatrix(tmp_path / "bad.gguf", e)
    code, out, err = gl("imatrix", "info", p, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["format"] == "gguf" and doc["entries"] == 3 and doc["chunk_count"] == 4
    stats = {s["name"]: s for s in doc["stats"]}
    up = stats["blk.0.ffn_up_exps.weight"]
    assert up["n_mat"] == N_EXP and up["zero_count_mats"] == 2 and up["counts"][2] == 0
    q = stats["blk.0.attn_q.weight"]
    assert (q["nans"], q["infs"], q["zeros"]) == (1, 1, 1)
    code, out, _ = gl("imatrix", "info", p)
    assert code == 0 and "blk.0.ffn_up_exps.weight" in out and "(2 at 0)" in out


# ------------------------------------------------------------------ bad input

def _dat_bytes(name=b"blk.0.attn_q.weight", ncall=1, nval=4, values=4, n_entries=1, trailer=True):
    out = struct.pack("<i", n_entries) + struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, nval)
    out += np.ones(values, dtype="<f4").tobytes()
    if trailer:
        out += struct.pack("<ii", 1, 3) + b"a.t"
    return out


HEADER = 4 + 4 + len(b"blk.0.attn_q.weight")  # offset of ncall in _dat_bytes


@pytest.mark.parametrize("data, offset, words", [
    (_dat_bytes()[:HEADER + 8 + 6], HEADER + 4, "values"),  # cut inside the values
    (struct.pack("<ii", 1, 10**6) + b"blk.0" + bytes(64), 4, "name of 1000000 bytes"),  # name beyond the end
    (_dat_bytes(ncall=-5), HEADER, "negative call count"),
    (_dat_bytes(n_entries=2**31 - 1), 0, "2147483647 entries"),
    (_dat_bytes(n_entries=0), 0, "entry count is 0"),
    (_dat_bytes(nval=0, values=0, trailer=False), HEADER + 4, "0 values"),
    (_dat_bytes() + b"junk", len(_dat_bytes()), "unexpected bytes"),
    (_dat_bytes()[:3], 0, "truncated"),
])
def test_bad_dat_names_file_and_byte(tmp_path, gl, data, offset, words):
    p = tmp_path / "bad.dat"
    p.write_bytes(data)
    code, out, err = gl("imatrix", "info", p)
    assert code == 2
    assert err.count("\n") == 1 and str(p) in err and f"(at byte {offset})" in err and words in err, err


def _gguf_with_counts(tmp_path, counts):
    sums = np.ones((len(counts), 64), dtype=np.float32)
    return write_gguf_imatrix(tmp_path / "c.gguf", {"blk.0.ffn_up_exps.weight": (sums, np.array(counts))})


@pytest.mark.parametrize("counts, index, words", [
    ([3, -2, 1], 1, "negative"), ([3, 1e12, 1], 1, "absurdly large"), ([np.nan, 1, 1], 0, "not finite"),
    ([3, 1.5, 1], 1, "not a whole number"),
])
def test_bad_gguf_counts_name_the_byte(tmp_path, gl, counts, index, words):
    from gl_plugins.model.gguf_header import read_header

    p = _gguf_with_counts(tmp_path, counts)
    h = read_header(p)
    t = next(t for t in h.tensors if t.name.endswith(".counts"))
    code, _, err = gl("imatrix", "info", p)
    assert code == 2 and f"(at byte {h.data_offsets[0] + t.offset + 4 * index})" in err and words in err, err


def test_gguf_model_is_not_an_imatrix(tmp_path, gl):
    from synth import SynthSpec, write_model

    model = write_model(tmp_path / "m.gguf", SynthSpec())[0]
    code, _, err = gl("imatrix", "info", model)
    assert code == 2 and "is a llama model, not an imatrix" in err and "(at byte 0)" in err


def test_truncated_gguf_and_structural_errors(tmp_path, gl):
    p = _gguf_with_counts(tmp_path, [1, 2, 3])
    data = p.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:len(data) - 100])
    code, _, err = gl("imatrix", "info", cut)
    assert code == 2 and "truncated" in err and str(cut) in err
    # an imatrix given where the model belongs
    code, _, err = gl("imatrix", "audit", p, "--imatrix", p)
    assert code == 2 and "is an imatrix file, not a model" in err
    # in_sum2 without counts
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "nocounts.gguf"), "x")
    del w.kv_data[0]["general.architecture"]
    w.add_string("general.type", "imatrix")
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.ones((1, 32), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    code, _, err = gl("imatrix", "info", tmp_path / "nocounts.gguf")
    assert code == 2 and "no matching blk.0.attn_q.weight.counts" in err
    # F16 sums
    f16 = write_gguf_imatrix(tmp_path / "f16.gguf", {"blk.0.attn_q.weight": (np.ones((1, 32)), [1])},
                             tensor_dtype=np.float16)
    code, _, err = gl("imatrix", "info", f16)
    assert code == 2 and "must be F32" in err
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    code, _, err = gl("imatrix", "info", empty)
    assert code == 2 and "is empty" in err


def test_hostile_claims_cost_no_memory(tmp_path):
    # a .dat claiming 2 GB of values and a name of 2 GB: refused before any allocation
    hostile = [struct.pack("<iiii", 1, 4, 1, 1) + b"abcd" + struct.pack("<ii", 1, 2**29),
               struct.pack("<ii", 1, 2**31 - 1) + b"x" * 64]
    tracemalloc.start()
    for i, data in enumerate(hostile):
        p = tmp_path / f"h{i}.dat"
        p.write_bytes(data)
        with pytest.raises(InputError):
            read_imatrix(p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


# ------------------------------------------------------------------ conversion

def test_convert_gguf_to_dat_says_what_it_drops_and_keeps_importance(moe_gguf, tmp_path, gl):
    out = tmp_path / "moe.dat"
    code, stdout, err = gl("imatrix", "convert", moe_gguf, out)
    assert code == 0, err
    assert "per-expert counts" in err and "in_sum" in err and "only the last of 2 dataset names" in err
    src, dst = read_imatrix(moe_gguf), read_imatrix(out)
    assert dst.format == "dat" and dst.datasets == ["b.txt"] and dst.chunk_count == 1
    for name, e in src.entries.items():
        # what llama-quantize computes from each file is the same
        assert np.allclose(src.importance(e).reshape(-1), dst.importance(dst.entries[name]).reshape(-1),
                           rtol=1e-6)
    # llama-imatrix's ncall: ceil(max count / chunk size)
    assert dst.entries["blk.0.ffn_up_exps.weight"].counts.tolist() == [1]


def test_convert_drops_entries_without_data_to_dat(tmp_path):
    e = moe_entries()
    sums, counts = e["blk.0.ffn_up_exps.weight"]
    e["blk.0.ffn_up_exps.weight"] = (sums, np.zeros_like(counts))
    imx = read_imatrix(write_gguf_imatrix(tmp_path / "z.gguf", e))
    warnings = convert(imx, tmp_path / "z.dat", "dat")
    assert any("left out" in w and "blk.0.ffn_up_exps.weight" in w for w in warnings)
    assert set(read_imatrix(tmp_path / "z.dat").entries) == set(e) - {"blk.0.ffn_up_exps.weight"}


def test_convert_dat_to_gguf_and_back_is_lossless(tmp_path, gl):
    rng = np.random.default_rng(3)
    v = {f"blk.{i}.ffn_down.weight": (rng.random(512, dtype=np.float32) * 7, 7) for i in range(3)}
    src = write_dat_imatrix(tmp_path / "a.dat", v, chunk_count=7, dataset="t.txt")
    code, _, err = gl("imatrix", "convert", src, tmp_path / "a.gguf", "--chunk-size", "256")
    assert code == 0 and "assumed" not in err
    g = read_imatrix(tmp_path / "a.gguf")
    assert (g.format, g.chunk_size, g.chunk_count, g.datasets, g.missing_keys) == ("gguf", 256, 7, ["t.txt"], [])
    assert g.entries["blk.0.ffn_down.weight"].counts.tolist() == [7 * 256]
    code, _, err = gl("imatrix", "convert", tmp_path / "a.gguf", tmp_path / "b.dat")
    assert code == 0
    assert (tmp_path / "b.dat").read_bytes() == src.read_bytes()


def test_convert_writes_atomically(tmp_path, monkeypatch):
    imx = read_imatrix(write_gguf_imatrix(tmp_path / "s.gguf", moe_entries()))
    target = tmp_path / "t.dat"
    target.write_bytes(b"old")

    def boom(*_):
        raise RuntimeError("disk full")

    monkeypatch.setattr("gl_plugins.imatrix.formats.IMatrix.importance", boom)
    with pytest.raises(RuntimeError):
        convert(imx, target, "dat")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
