"""Scanning tensor data for NaN and Inf without dequantizing.

Float tensors (F32, F16, BF16) are checked value by value. In quantized
tensors the only floats are the per-block scales (``ggml_half`` fields whose
byte offsets inside a block are given below, from ``ggml-common.h``); a NaN or
Inf there poisons the whole block, so they are what is checked. The file is
memory-mapped and read in slices; nothing is copied whole.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

# ggml type -> byte offsets of the fp16 scale fields inside one block
SCALE_OFFSETS: dict[str, tuple[int, ...]] = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "Q8_1": (0, 2),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,), "Q8_K": (),
    "IQ2_XXS": (0,), "IQ2_XS": (0,), "IQ2_S": (0,), "IQ3_XXS": (0,), "IQ3_S": (0,), "IQ1_S": (0,),
    "IQ4_NL": (0,), "IQ4_XS": (0,), "TQ1_0": (52,), "TQ2_0": (64,), "Q1_0": (0,), "Q2_0": (0,),
}
FLOAT_TYPES = ("F32", "F16", "BF16")
SLICE = 1 << 24  # elements per read


@dataclass
class ScanResult:
    name: str
    type: str
    checked: int  # values (float tensors) or scales (quantized tensors) looked at
    bad: int  # of those, NaN or Inf
    what: str  # "values" | "block scales"


def _count_bad_f16_bits(u16: np.ndarray) -> int:
    return int(np.count_nonzero((u16 & 0x7C00) == 0x7C00))


def scan_tensor(buf, offset: int, type_name: str, n_elements: int, block_size: int, type_size: int,
                name: str = "") -> ScanResult | None:
    """Count NaN/Inf in one tensor whose data starts at ``offset`` of ``buf``; None if not checkable."""
    if type_name in FLOAT_TYPES:
        bad = 0
        for start in range(0, n_elements, SLICE):
            n = min(SLICE, n_elements - start)
            if type_name == "F32":
                a = np.frombuffer(buf, dtype="<u4", count=n, offset=offset + 4 * start)
                bad += int(np.count_nonzero((a & 0x7F800000) == 0x7F800000))
            else:
                a = np.frombuffer(buf, dtype="<u2", count=n, offset=offset + 2 * start)
                mask = 0x7F80 if type_name == "BF16" else 0x7C00
                bad += int(np.count_nonzero((a & mask) == mask))
        return ScanResult(name, type_name, n_elements, bad, "values")
    offsets = SCALE_OFFSETS.get(type_name)
    if not offsets:
        return None
    n_blocks = n_elements // block_size
    bad = checked = 0
    for field in offsets:
        for start in range(0, n_blocks, SLICE):
            n = min(SLICE, n_blocks - start)
            a = np.ndarray((n,), dtype="<u2", buffer=buf, offset=offset + start * type_size + field,
                           strides=(type_size,))
            bad += _count_bad_f16_bits(a)
            checked += n
    return ScanResult(name, type_name, checked, bad, "block scales")


def scan_file(header) -> list[ScanResult]:
    """Scan every tensor of a GGUF (all parts of a split set) whose header has been read."""
    from gl_plugins.ggml_types import TYPES_BY_ID

    results: list[ScanResult] = []
    for part, path in enumerate(header.parts):
        tensors = [t for t in header.tensors if t.part == part]
        if not tensors:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            base = header.data_offsets[part]
            for t in tensors:
                gt = TYPES_BY_ID.get(t.type_id)
                if gt is None:
                    continue
                r = scan_tensor(mm, base + t.offset, gt.name, t.n_elements, gt.block_size, gt.type_size, t.name)
                if r is not None:
                    results.append(r)
    return results
