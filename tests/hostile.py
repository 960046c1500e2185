"""A corpus of hostile and broken GGUF files, written byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv_string(key: str, value: str | bytes) -> bytes:
    return _s(key) + struct.pack("<I", 8) + _s(value)


def tensor_info(name: str, shape, type_id: int, offset: int) -> bytes:
    return _s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<q", d) for d in shape) + \
        struct.pack("<IQ", type_id, offset)


def pad(data: bytes, align: int = 32) -> bytes:
    return data + b"\0" * (-len(data) % align)


def write_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    arch = kv_string("general.architecture", "llama")
    cases = {
        "many_tensors": (header(2**60, 1) + arch, "tensors"),
        "many_kv": (header(0, 2**60) + arch, "key-values"),
        "huge_string": (header(0, 1) + _s("general.architecture") + struct.pack("<I", 8) +
                        struct.pack("<Q", 2**40) + b"llama", "1099511627776 bytes"),
        "nested_arrays": (header(0, 1) + _s("x") + struct.pack("<I", 9) +
                          (struct.pack("<IQ", 9, 1)) * 64 + struct.pack("<IQ", 4, 0), "nests arrays"),
        "array_count": (header(0, 1) + _s("x") + struct.pack("<I", 9) + struct.pack("<IQ", 4, 2**62),
                        "elements"),
        "beyond_end": (pad(header(1, 1) + arch + tensor_info("w", (64, 64), 0, 1 << 20)) + b"\0" * 64,
                       "beyond the end"),
        "overlap": (pad(header(2, 1) + arch + tensor_info("a", (64, 2), 0, 0) +
                        tensor_info("b", (64, 2), 0, 256)) + b"\0" * 1024, "overlap"),
        "truncated_kv": (header(0, 2) + arch, "truncated"),
        "not_gguf": (b"PK\x03\x04" + b"\0" * 60, "not a GGUF file"),
        "bad_version": (b"GGUF" + struct.pack("<IQQ", 99, 0, 0), "version 99"),
        "bad_utf8": (header(0, 1) + kv_string("general.architecture", b"\xff\xfe"), "UTF-8"),
        "unknown_value_type": (header(0, 1) + _s("k") + struct.pack("<I", 77), "unknown value type"),
        "too_many_dims": (pad(header(1, 1) + arch + _s("w") + struct.pack("<I", 9)), "dimensions"),
    }
    out = {}
    for name, (data, phrase) in cases.items():
        p = folder / f"{name}.gguf"
        p.write_bytes(data)
        out[name] = (p, phrase)
    return out


def refusal_cost(fn, *args):
    """(the exception ``fn(*args)`` raised or None, seconds taken, peak bytes traced by tracemalloc)."""
    import time
    import tracemalloc

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn(*args)
        exc = None
    except Exception as e:  # noqa: BLE001 - the caller judges what was raised
        exc = e
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return exc, seconds, peak
