"""Hostile imatrix files and split sets: refused at once, by name, without allocating for the claim.

Story: someone downloads an imatrix (or a model split into parts) from a hub;
the file lies about its size. gl says which file and what is wrong in one
sentence, in milliseconds, and writes nothing.
"""

from __future__ import annotations

import shutil
import struct

import pytest

from gl_plugins.errors import InputError
from gl_plugins.model.gguf_header import read_header
from gl_plugins.imatrix.formats import convert, read_imatrix, write_gguf
from synth import SynthSpec, write_model
from hostile import refusal_cost
from hostile_imatrix import NAME, _dat_entry, write_corpus

MB = 2**20
SECONDS = 0.5  # measured: under 25 ms each; generous for two shared CI cores


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("hostile-imatrix"))


def test_every_hostile_imatrix_is_refused_quickly_and_cheaply(corpus):
    for name, (path, phrase) in corpus.items():
        exc, seconds, peak = refusal_cost(read_imatrix, path)
        assert isinstance(exc, InputError), (name, exc)
        assert str(exc).startswith(str(path)) and phrase in str(exc), (name, str(exc))
        assert seconds < SECONDS, (name, seconds)
        assert peak < 50 * MB, (name, peak)


@pytest.mark.parametrize("name", ["dat_many_entries", "dat_name_longer_than_file", "gguf_huge_ne0",
                                  "gguf_absurd_count", "gguf_many_tensors"])
def test_hostile_imatrix_through_the_cli(corpus, gl, name):
    path, phrase = corpus[name]
    code, out, err = gl("imatrix", "info", path)
    assert code == 2 and out == ""
    assert err.startswith(f"gl: error: {path}") and phrase in err and err.count("\n") == 1, err


def test_a_dat_whose_calls_overflow_a_gguf_count_is_refused_and_nothing_is_written(tmp_path, gl):
    src = tmp_path / "absurd-ncall.dat"
    src.write_bytes(struct.pack("<i", 1) + _dat_entry(NAME.encode(), 2**31 - 1, 8))
    out = tmp_path / "out.gguf"
    code, _, err = gl("imatrix", "convert", src, out)
    assert code == 2
    assert f"{src} (at byte 27): entry {NAME} records 2147483647 calls; at 512 tokens per chunk" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["absurd-ncall.dat"]
    # the same file with a sane call count converts; a chunk size too large for the counts does not
    src.write_bytes(struct.pack("<i", 1) + _dat_entry(NAME.encode(), 4, 8))
    exc, seconds, _ = refusal_cost(convert, read_imatrix(src), out, "gguf", 2**40)
    assert isinstance(exc, InputError) and "at 1099511627776 tokens per chunk" in str(exc) and seconds < SECONDS
    assert gl("imatrix", "convert", src, out)[0] == 0 and read_imatrix(out).entries[NAME].counts.tolist() == [2048]


@pytest.fixture(scope="module")
def one_part(tmp_path_factory):
    p = tmp_path_factory.mktemp("split") / "one.gguf"
    write_model(p, SynthSpec(n_layer=1, hidden=64, ffn=128, vocab=32))
    return p


@pytest.mark.parametrize("names, given, phrase", [
    (["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"], "m-00001-of-00003.gguf",
     "split set of 3 parts is incomplete: missing m-00002-of-00003.gguf"),
    (["m-00001-of-99999.gguf"], "m-00001-of-99999.gguf",
     "split set of 99999 parts is incomplete: missing m-00002-of-99999.gguf, m-00003-of-99999.gguf, "
     "m-00004-of-99999.gguf, m-00005-of-99999.gguf, m-00006-of-99999.gguf and 99993 more"),
    (["m-00001-of-00000.gguf"], "m-00001-of-00000.gguf", "names part 1 of a split set of 0; parts are numbered 1 to the count"),
    (["m-00004-of-00003.gguf"], "m-00004-of-00003.gguf", "names part 4 of a split set of 3; parts are numbered 1 to the count"),
])
def test_split_sets_with_missing_or_impossible_parts(tmp_path, one_part, gl, names, given, phrase):
    for n in names:
        shutil.copy(one_part, tmp_path / n)
    path = tmp_path / given
    exc, seconds, peak = refusal_cost(read_header, path)
    assert isinstance(exc, InputError) and str(exc) == f"{path}: {phrase}"
    assert seconds < SECONDS and peak < 50 * MB, (seconds, peak)
    code, _, err = gl("inspect", path)
    assert code == 2 and err == f"gl: error: {path}: {phrase}\n"


def test_a_gguf_imatrix_split_into_parts_is_refused(tmp_path):
    import numpy as np

    from gl_plugins.imatrix.formats import OutEntry

    def entry(name):
        return OutEntry(name, 1, 8, False, lambda: (np.ones((1, 8), np.float32), np.array([4.0]), None))

    write_gguf(tmp_path / "i-00001-of-00002.gguf", [entry("a")], datasets=["c"], chunk_count=1, chunk_size=4)
    write_gguf(tmp_path / "i-00002-of-00002.gguf", [entry("b"), entry("c")], datasets=["c"], chunk_count=1,
               chunk_size=4)
    exc, seconds, _ = refusal_cost(read_imatrix, tmp_path / "i-00001-of-00002.gguf")
    assert isinstance(exc, InputError) and "is part of a split set of 2 files" in str(exc) and seconds < SECONDS
