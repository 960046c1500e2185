"""ggml tensor types and llama.cpp file types ("ftypes"), as llama.cpp defines them.

The table mirrors ``ggml/include/ggml.h`` and ``ggml/src/ggml.c`` of the pinned
llama.cpp. Types the ``gguf`` package does not know yet (``Q1_0``, ``Q2_0``)
are here, so headers holding them can still be read. A table read from the
llama.cpp build gl drives (``gl toolchain install`` builds ``gl-ggml-types``)
overrides this one where they differ; see :func:`load_build_table`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from gl_plugins.errors import GLError


@dataclass(frozen=True)
class GGMLType:
    name: str  # upper case, as ggml spells it (Q4_K, IQ2_XS, F16)
    id: int
    block_size: int  # elements per block
    type_size: int  # bytes per block

    @property
    def bits_per_weight(self) -> float:
        return self.type_size * 8 / self.block_size

    @property
    def quantized(self) -> bool:
        return self.block_size > 1

    def row_bytes(self, ne0: int) -> int:
        """ggml_row_size: ``type_size * ne0 / block_size`` (what llama-quantize counts, misfit rows too)."""
        return self.type_size * ne0 // self.block_size


# (name, id, block size, bytes per block)
_TABLE = [
    ("F32", 0, 1, 4), ("F16", 1, 1, 2), ("Q4_0", 2, 32, 18), ("Q4_1", 3, 32, 20),
    ("Q5_0", 6, 32, 22), ("Q5_1", 7, 32, 24), ("Q8_0", 8, 32, 34), ("Q8_1", 9, 32, 36),
    ("Q2_K", 10, 256, 84), ("Q3_K", 11, 256, 110), ("Q4_K", 12, 256, 144),
    ("Q5_K", 13, 256, 176), ("Q6_K", 14, 256, 210), ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66), ("IQ2_XS", 17, 256, 74), ("IQ3_XXS", 18, 256, 98),
    ("IQ1_S", 19, 256, 50), ("IQ4_NL", 20, 32, 18), ("IQ3_S", 21, 256, 110),
    ("IQ2_S", 22, 256, 82), ("IQ4_XS", 23, 256, 136), ("I8", 24, 1, 1), ("I16", 25, 1, 2),
    ("I32", 26, 1, 4), ("I64", 27, 1, 8), ("F64", 28, 1, 8), ("IQ1_M", 29, 256, 56),
    ("BF16", 30, 1, 2), ("TQ1_0", 34, 256, 54), ("TQ2_0", 35, 256, 66),
    ("MXFP4", 39, 32, 17), ("NVFP4", 40, 64, 36), ("Q1_0", 41, 128, 18), ("Q2_0", 42, 64, 18),
]

TYPES_BY_ID: dict[int, GGMLType] = {}
TYPES_BY_NAME: dict[str, GGMLType] = {}


def _install(rows) -> None:
    TYPES_BY_ID.clear()
    TYPES_BY_NAME.clear()
    for name, tid, blck, size in rows:
        t = GGMLType(name, tid, blck, size)
        TYPES_BY_ID[tid] = t
        TYPES_BY_NAME[name] = t


_install(_TABLE)

# Types llama-quantize refuses to make without an importance matrix
# (llama-quant.cpp: the "very low-bit quantization" check).
NEEDS_IMATRIX = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"})
# Tensors exempt from that check.
IMATRIX_EXEMPT = ("token_embd.weight", "per_layer_token_embd.weight", "output.weight")

# Shape fallback: the type llama-quantize uses when ne[0] is not a multiple of
# the chosen type's block size (llama-quant.cpp, llama_tensor_get_type).
FALLBACK = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL",
    "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}


# The type ggml's CPU backend converts the activations to before it multiplies them with a weight of
# each type (ggml/src/ggml-cpu/ggml-cpu.c, type_traits_cpu[...].vec_dot_type): K- and IQ types take
# 8-bit activations in blocks of 256 (Q8_K), the 32-blocks types 8-bit activations in blocks of 32
# (Q8_0, Q8_1), the float types activations of their own type. A type missing here multiplies in F32.
VEC_DOT_TYPE = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q1_0": "Q8_0", "Q2_0": "Q8_0", "Q4_0": "Q8_0", "Q4_1": "Q8_1",
    "Q5_0": "Q8_0", "Q5_1": "Q8_1", "Q8_0": "Q8_0", "Q8_1": "Q8_1", "MXFP4": "Q8_0", "NVFP4": "Q8_0",
    "Q2_K": "Q8_K", "Q3_K": "Q8_K", "Q4_K": "Q8_K", "Q5_K": "Q8_K", "Q6_K": "Q8_K", "IQ2_XXS": "Q8_K",
    "IQ2_XS": "Q8_K", "IQ3_XXS": "Q8_K", "IQ3_S": "Q8_K", "IQ2_S": "Q8_K", "IQ1_S": "Q8_K", "IQ1_M": "Q8_K",
    "IQ4_NL": "Q8_0", "IQ4_XS": "Q8_K", "TQ1_0": "Q8_K", "TQ2_0": "Q8_K",
}


def activation_type(weight_type: str) -> str:
    """The type the activations are multiplied in against a weight of ``weight_type`` (:data:`VEC_DOT_TYPE`)."""
    return VEC_DOT_TYPE.get(weight_type, "F32")


def get_type(name: str) -> GGMLType:
    """A ggml type by name, case-insensitively; GLError listing valid names otherwise."""
    t = TYPES_BY_NAME.get(str(name).strip().upper())
    if t is None:
        valid = ", ".join(sorted(TYPES_BY_NAME))
        raise GLError(f"unknown ggml type {name!r}; valid types: {valid}")
    return t


def type_name(type_id: int) -> str:
    t = TYPES_BY_ID.get(type_id)
    return t.name if t else f"type#{type_id}"


def tensor_bytes(type_: GGMLType | str, shape: tuple[int, ...] | list[int]) -> int:
    """Bytes a tensor of ``shape`` (ne0 first) takes in ``type_`` (a type or its name), as llama-quantize
    counts them: rows × :meth:`GGMLType.row_bytes`."""
    t = TYPES_BY_NAME[type_] if isinstance(type_, str) else type_
    return t.row_bytes(shape[0] if shape else 1) * math.prod(shape[1:])


# llama.cpp file types, as `llama-quantize` spells them (tools/quantize/quantize.cpp).
# name -> (llama_ftype id, the ggml type llama-quantize uses as the default for it)
FTYPES: dict[str, tuple[int, str]] = {
    "Q1_0": (40, "Q1_0"), "Q2_0": (41, "Q2_0"),
    "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "MXFP4_MOE": (38, "MXFP4"), "Q5_0": (8, "Q5_0"),
    "Q5_1": (9, "Q5_1"), "IQ2_XXS": (19, "IQ2_XXS"), "IQ2_XS": (20, "IQ2_XS"),
    "IQ2_S": (28, "IQ2_XS"), "IQ2_M": (29, "IQ2_S"), "IQ1_S": (24, "IQ1_S"),
    "IQ1_M": (31, "IQ1_M"), "TQ1_0": (36, "TQ1_0"), "TQ2_0": (37, "TQ2_0"),
    "Q2_K": (10, "Q2_K"), "Q2_K_S": (21, "Q2_K"), "IQ3_XXS": (23, "IQ3_XXS"),
    "IQ3_S": (26, "IQ3_S"), "IQ3_M": (27, "IQ3_S"), "Q3_K": (12, "Q3_K"),
    "IQ3_XS": (22, "IQ3_S"), "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"),
    "Q3_K_L": (13, "Q3_K"), "IQ4_NL": (25, "IQ4_NL"), "IQ4_XS": (30, "IQ4_XS"),
    "Q4_K": (15, "Q4_K"), "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"),
    "Q5_K": (17, "Q5_K"), "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"), "Q8_0": (7, "Q8_0"), "F16": (1, "F16"), "BF16": (32, "BF16"),
    "F32": (0, "F32"),
}
# Aliases llama-quantize accepts that name another ftype.
FTYPE_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
FTYPE_NAMES_BY_ID = {fid: name for name, (fid, _) in FTYPES.items() if name not in FTYPE_ALIASES}


def get_ftype(name: str) -> str:
    """Canonical llama-quantize file-type name for ``name`` (case-insensitive)."""
    key = str(name).strip().upper()
    if key not in FTYPES:
        valid = ", ".join(FTYPES)
        raise GLError(f"unknown quant type {name!r}; valid types (llama-quantize spelling): {valid}")
    return FTYPE_ALIASES.get(key, key)


def default_type(quant: str) -> GGMLType:
    """The ggml type llama-quantize gives a tensor by default for a file type (Q4_K_M -> Q4_K)."""
    return TYPES_BY_NAME[FTYPES[get_ftype(quant)][1]]


def ftype_name(ftype_id: int | None) -> str | None:
    if ftype_id is None:
        return None
    return FTYPE_NAMES_BY_ID.get(int(ftype_id) & ~1024, f"ftype#{ftype_id}")


def load_build_table(path: str | Path) -> None:
    """Replace the table with one printed by the ``gl-ggml-types`` helper of a build.

    The file is JSON: a list of ``{"name", "id", "block_size", "type_size"}``.
    Entries with block size 0 (removed types) are ignored.
    """
    rows = json.loads(Path(path).read_text())
    merged = {r[1]: r for r in _TABLE}
    for r in rows:
        if r.get("block_size"):
            merged[int(r["id"])] = (str(r["name"]).upper(), int(r["id"]), int(r["block_size"]),
                                    int(r["type_size"]))
    _install(sorted(merged.values(), key=lambda r: r[1]))
