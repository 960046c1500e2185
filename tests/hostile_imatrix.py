"""A corpus of hostile and broken imatrix files (legacy .dat and GGUF), written byte by byte.

Each case is small on disk but claims something absurd: billions of entries,
a name longer than the file, negative or absurd call and value counts, GGUF
tensors of 2^40 values, token counts that are not counts. Readers must refuse
each one with a sentence naming the file, quickly and without allocating for
the claim.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hostile import _s, header, kv_string, pad, tensor_info

NAME = "blk.0.attn_q.weight"


def _dat_entry(name: bytes, ncall: int, nval: int, values: bytes | None = None) -> bytes:
    if values is None:
        values = struct.pack(f"<{max(nval, 0)}f", *([1.0] * max(nval, 0))) if 0 <= nval <= 64 else b""
    return struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, nval) + values


def dat_cases() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a phrase the refusal must contain)."""
    n = NAME.encode()
    ok = _dat_entry(n, 4, 8)
    return {
        "dat_many_entries": (struct.pack("<i", 2**31 - 1) + ok, "claims 2147483647 entries"),
        "dat_negative_entries": (struct.pack("<i", -7) + ok, "entry count is -7"),
        "dat_name_longer_than_file": (struct.pack("<ii", 1, 2**31 - 1) + n + b"\0" * 12,
                                      "claims a name of 2147483647 bytes"),
        "dat_negative_name_length": (struct.pack("<ii", 1, -1) + b"\0" * 16, "claims a name of -1 bytes"),
        "dat_negative_ncall": (struct.pack("<i", 1) + _dat_entry(n, -3, 8), "negative call count -3"),
        "dat_absurd_nval": (struct.pack("<i", 1) + _dat_entry(n, 4, 2**31 - 1, b"\0" * 64),
                            "claims 2147483647 values"),
        "dat_negative_nval": (struct.pack("<i", 1) + _dat_entry(n, 4, -8, b"\0" * 32), "claims -8 values"),
        "dat_zero_nval": (struct.pack("<i", 1) + _dat_entry(n, 4, 0), "claims 0 values"),
        "dat_bad_utf8_name": (struct.pack("<i", 1) + _dat_entry(b"\xff\xfe", 4, 8), "not valid UTF-8"),
        "dat_duplicate_entry": (struct.pack("<i", 2) + ok + ok, "appears twice"),
        "dat_negative_chunks": (struct.pack("<i", 1) + ok + struct.pack("<ii", -1, 0), "chunk count is negative"),
        "dat_dataset_longer_than_file": (struct.pack("<i", 1) + ok + struct.pack("<ii", 4, 2**31 - 1),
                                         "dataset name claims 2147483647 bytes"),
        "dat_trailing_garbage": (struct.pack("<i", 1) + ok + struct.pack("<ii", 4, 1) + b"xGARBAGE",
                                 "unexpected bytes follow"),
        "dat_truncated": ((struct.pack("<i", 1) + ok)[:-6], "values but only"),
    }


def _u32(key: str, v: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, v)


def _u64(key: str, v: int) -> bytes:
    return _s(key) + struct.pack("<IQ", 10, v)


def _gguf_imatrix(tensors: list[tuple[str, tuple, int]], data: bytes, *, chunk_count=None, chunk_size=None,
                  extra_kv: bytes = b"", n_extra: int = 0) -> bytes:
    """A GGUF imatrix header (general.type + the three keys) over ``tensors``, then ``data``."""
    kv = (kv_string("general.type", "imatrix") + _s("imatrix.datasets") + struct.pack("<IIQ", 9, 8, 1)
          + _s("c.txt") + (chunk_count or _u32("imatrix.chunk_count", 4))
          + (chunk_size or _u32("imatrix.chunk_size", 128)) + extra_kv)
    infos, offset = b"", 0
    for name, shape, type_id in tensors:
        infos += tensor_info(name, shape, type_id, offset)
        offset += 64
    return pad(header(len(tensors), 4 + n_extra) + kv + infos) + data


def _pair(ne0: int = 8, n_mat: int = 1, sums_type: int = 0):
    return [(f"{NAME}.in_sum2", (ne0, n_mat), sums_type), (f"{NAME}.counts", (1, n_mat), 0)]


def _counts_data(count: float, ne0: int = 8) -> bytes:
    return struct.pack(f"<{ne0}f", *([1.0] * ne0)).ljust(64, b"\0") + struct.pack("<f", count).ljust(64, b"\0")


def gguf_cases() -> dict[str, tuple[bytes, str]]:
    good = _counts_data(512.0)
    many = header(2**60, 1) + kv_string("general.type", "imatrix")
    return {
        "gguf_many_tensors": (many, "claims 1152921504606846976 tensors"),
        "gguf_many_datasets": (header(0, 1) + _s("imatrix.datasets") + struct.pack("<IIQ", 9, 8, 2**60),
                               "claims 1152921504606846976 elements"),
        "gguf_huge_ne0": (_gguf_imatrix(_pair(ne0=2**40), good), "lies beyond the end of the file"),
        "gguf_huge_n_mat": (_gguf_imatrix(_pair(n_mat=2**40), good), "lies beyond the end of the file"),
        "gguf_dims_overflow": (_gguf_imatrix([(f"{NAME}.in_sum2", (2**62, 2**62, 2**62, 2**62), 0),
                                              (f"{NAME}.counts", (1, 1), 0)], good),
                               "lies beyond the end of the file"),
        "gguf_negative_dim": (_gguf_imatrix([(f"{NAME}.in_sum2", (8, -1), 0), (f"{NAME}.counts", (1, 1), 0)],
                                            good), "non-positive dimension"),
        "gguf_negative_count": (_gguf_imatrix(_pair(), _counts_data(-5.0)), "negative for a token count"),
        "gguf_nan_count": (_gguf_imatrix(_pair(), _counts_data(float("nan"))), "not finite for a token count"),
        "gguf_absurd_count": (_gguf_imatrix(_pair(), _counts_data(1e30)), "absurdly large for a token count"),
        "gguf_fractional_count": (_gguf_imatrix(_pair(), _counts_data(2.5)), "not a whole number"),
        "gguf_absurd_chunk_count": (_gguf_imatrix(_pair(), good, chunk_count=_u64("imatrix.chunk_count", 2**40)),
                                    "imatrix.chunk_count is 1099511627776"),
        "gguf_absurd_chunk_size": (_gguf_imatrix(_pair(), good, chunk_size=_u64("imatrix.chunk_size", 2**63)),
                                   "imatrix.chunk_size is 9223372036854775808"),
        "gguf_quantized_sums": (_gguf_imatrix(_pair(ne0=32, sums_type=2), good), "must be F32"),
        "gguf_counts_do_not_divide": (_gguf_imatrix([(f"{NAME}.in_sum2", (8, 1), 0),
                                                     (f"{NAME}.counts", (3, 1), 0)], good),
                                      "not a multiple of the 3 counts"),
        "gguf_counts_without_sums": (_gguf_imatrix([(f"{NAME}.counts", (1, 1), 0),
                                                    ("blk.1.ffn_up.weight.in_sum2", (8, 1), 0),
                                                    ("blk.1.ffn_up.weight.counts", (1, 1), 0)],
                                                   good + good), "has no matching"),
        "gguf_nested_datasets": (header(0, 1) + _s("imatrix.datasets") + struct.pack("<I", 9)
                                 + struct.pack("<IQ", 9, 1) * 64 + struct.pack("<IQ", 8, 0), "nests arrays"),
        "gguf_a_model_not_an_imatrix": (pad(header(1, 1) + kv_string("general.architecture", "llama")
                                            + tensor_info("token_embd.weight", (8, 1), 0, 0)) + b"\0" * 64,
                                        "is a llama model, not an imatrix"),
    }


def write_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (data, phrase) in {**dat_cases(), **gguf_cases()}.items():
        p = folder / (name + (".dat" if name.startswith("dat_") else ".gguf"))
        p.write_bytes(data)
        out[name] = (p, phrase)
    return out
