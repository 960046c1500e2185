"""A bounded, header-only GGUF reader.

It reads the key-value metadata and the tensor directory of a GGUF file (or of
every part of a split set) without touching tensor data, and refuses hostile
headers before allocating for them: every count and length is checked against
the bytes that remain in the file. Tensor types that this package does not
know are kept by id, so newer files still open.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins.errors import InputError, open_input
from gl_plugins.ggml_types import TYPES_BY_ID, tensor_bytes

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_ARRAY_DEPTH = 2
# arrays larger than this are kept as references and read on demand
EAGER_ARRAY_LIMIT = 4096

# value type id -> (struct format, size); 8 = string, 9 = array
_SCALARS = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_MIN_SIZE = {**{k: v[1] for k, v in _SCALARS.items()}, _STRING: 8, _ARRAY: 12}

SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass
class GGUFArray:
    """An array value too large to read eagerly; ``load()`` reads it."""

    path: str
    offset: int
    elem_type: int
    count: int

    def __len__(self) -> int:
        return self.count

    def load(self) -> list:
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            cur = _Cursor(mm, self.path, self.offset)
            return [cur.value(self.elem_type, 1) for _ in range(self.count)]


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ne0 first, as GGUF stores it
    type_id: int
    offset: int  # relative to the data section of its file
    part: int = 0  # index of the split part holding it

    @property
    def type_name(self) -> str:
        t = TYPES_BY_ID.get(self.type_id)
        return t.name if t else f"type#{self.type_id}"

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int | None:
        t = TYPES_BY_ID.get(self.type_id)
        return tensor_bytes(t, self.shape) if t else None


@dataclass
class GGUFHeader:
    path: str
    version: int
    kv: dict
    tensors: list[TensorInfo]
    data_offsets: list[int] = field(default_factory=list)  # per part
    file_sizes: list[int] = field(default_factory=list)  # per part
    parts: list[str] = field(default_factory=list)

    def get(self, key: str, default=None):
        return self.kv.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.kv.get("general.architecture")

    def arch_get(self, suffix: str, default=None):
        arch = self.architecture
        return self.kv.get(f"{arch}.{suffix}", default) if arch else default


class _Cursor:
    def __init__(self, buf, path: str, pos: int = 0):
        self.buf = buf
        self.path = path
        self.pos = pos
        self.size = len(buf)

    def fail(self, message: str, offset: int | None = None):
        raise InputError(self.path, message, offset=self.pos if offset is None else offset)

    def need(self, n: int, what: str):
        if n < 0 or self.pos + n > self.size:
            self.fail(f"file is truncated or corrupt: {what} needs {n} bytes but only "
                      f"{max(self.size - self.pos, 0)} remain")

    def scalar(self, fmt: str, size: int, what: str):
        self.need(size, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return v

    def u32(self, what: str) -> int:
        return self.scalar("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", 8, what)

    def string(self, what: str) -> str:
        start = self.pos
        n = self.u64(f"length of {what}")
        if n > self.size - self.pos:
            self.fail(f"{what} claims {n} bytes but only {self.size - self.pos} remain in the file",
                      start)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not valid UTF-8", start)

    def value(self, vtype: int, depth: int, what: str = "value"):
        if vtype in _SCALARS:
            fmt, size = _SCALARS[vtype]
            return self.scalar(fmt, size, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            start = self.pos
            if depth > MAX_ARRAY_DEPTH:
                self.fail(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH} levels", start)
            etype = self.u32(f"element type of {what}")
            count = self.u64(f"element count of {what}")
            if etype not in _MIN_SIZE:
                self.fail(f"{what} has unknown element type {etype}", start)
            if count * _MIN_SIZE[etype] > self.size - self.pos:
                self.fail(f"{what} claims {count} elements, more than the file can hold", start)
            if count > EAGER_ARRAY_LIMIT and etype in (_STRING, *_SCALARS):
                ref = GGUFArray(self.path, self.pos, etype, count)
                self.skip_array(etype, count, what)
                return ref
            return [self.value(etype, depth + 1, what) for _ in range(count)]
        self.fail(f"{what} has unknown value type {vtype}")

    def skip_array(self, etype: int, count: int, what: str):
        if etype in _SCALARS:
            n = _SCALARS[etype][1] * count
            self.need(n, what)
            self.pos += n
            return
        buf, size, pos = self.buf, self.size, self.pos
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.fail(f"file is truncated inside {what}")
            (n,) = unpack(buf, pos)
            pos += 8 + n
            if pos > size:
                self.pos = pos - n - 8
                self.fail(f"a string in {what} claims {n} bytes, more than remain in the file")
        self.pos = pos


def _read_one(path: str, part: int = 0) -> tuple[int, dict, list[TensorInfo], int, int]:
    with open_input(path, "a GGUF file") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise InputError(path, f"is not a GGUF file (only {size} bytes)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if mm[:4] != GGUF_MAGIC:
                raise InputError(path, f"is not a GGUF file (magic {bytes(mm[:4])!r}, expected b'GGUF')",
                                 offset=0)
            cur = _Cursor(mm, path, 4)
            version = cur.u32("version")
            if version not in (2, 3):
                cur.fail(f"unsupported GGUF version {version} (gl reads versions 2 and 3)", 4)
            n_tensors = cur.u64("tensor count")
            n_kv = cur.u64("key-value count")
            remaining = size - cur.pos
            if n_kv * 13 > remaining:
                cur.fail(f"header claims {n_kv} key-values, more than the file can hold", 16)
            if n_tensors * 24 > remaining:
                cur.fail(f"header claims {n_tensors} tensors, more than the file can hold", 8)
            kv: dict = {}
            for i in range(n_kv):
                key = cur.string(f"key #{i}")
                vtype = cur.u32(f"type of {key}")
                kv[key] = cur.value(vtype, 1, key)
            tensors: list[TensorInfo] = []
            for i in range(n_tensors):
                start = cur.pos
                name = cur.string(f"name of tensor #{i}")
                n_dims = cur.u32(f"dimension count of {name}")
                if n_dims == 0 or n_dims > MAX_DIMS:
                    cur.fail(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)", start)
                shape = tuple(cur.scalar("<q", 8, f"shape of {name}") for _ in range(n_dims))
                if any(d <= 0 for d in shape):
                    cur.fail(f"tensor {name} has a non-positive dimension {shape}", start)
                type_id = cur.u32(f"type of {name}")
                offset = cur.u64(f"offset of {name}")
                tensors.append(TensorInfo(name, shape, type_id, offset, part))
            align = kv.get("general.alignment", DEFAULT_ALIGNMENT)
            if not isinstance(align, int) or align <= 0 or align & (align - 1):
                cur.fail(f"general.alignment is {align!r}, not a power of two")
            data_offset = (cur.pos + align - 1) // align * align
    _check_tensor_data(path, tensors, data_offset, size, align)
    return version, kv, tensors, data_offset, size


def _check_tensor_data(path, tensors, data_offset, size, align) -> None:
    data_size = size - data_offset
    spans = []
    seen = set()
    for t in tensors:
        if t.name in seen:
            raise InputError(path, f"tensor {t.name} appears twice in the tensor directory")
        seen.add(t.name)
        if t.offset % align:
            raise InputError(path, f"tensor {t.name} data offset {t.offset} is not aligned to {align}")
        nbytes = t.nbytes
        if nbytes is None:
            continue
        t_ = TYPES_BY_ID[t.type_id]
        if t.shape[0] % t_.block_size:
            raise InputError(path, f"tensor {t.name} row length {t.shape[0]} is not a multiple of "
                                   f"the {t_.name} block size {t_.block_size}")
        if t.offset + nbytes > data_size:
            raise InputError(path, f"tensor {t.name} data (offset {t.offset}, {nbytes} bytes) lies beyond "
                                   f"the end of the file; the file is truncated or corrupt",
                             offset=data_offset + t.offset)
        spans.append((t.offset, t.offset + nbytes, t.name))
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise InputError(path, f"tensors {an} and {bn} overlap in the data section",
                             offset=data_offset + b0)


def split_parts(path: str | os.PathLike) -> list[str]:
    """All files of a split set given any one part; ``[path]`` for a single file."""
    p = Path(path)
    m = SPLIT_RE.match(p.name)
    if not m:
        return [os.fspath(p)]
    no, count = int(m["no"]), int(m["count"])
    if not 1 <= no <= count:
        raise InputError(path, f"names part {no} of a split set of {count}; parts are numbered 1 to the count")
    stem = m["stem"]

    def name(i: int) -> str:
        return f"{stem}-{i:05d}-of-{count:05d}.gguf"

    try:  # one listing, not one stat per part: a name may claim 99999 parts
        listing = os.listdir(p.parent)
    except OSError:
        listing = []
    present = set()
    for entry in listing:
        e = SPLIT_RE.match(entry)
        if e and e["stem"] == stem and int(e["count"]) == count and entry == name(int(e["no"])):
            present.add(int(e["no"]))
    n_missing = count - sum(1 for i in present if 1 <= i <= count)
    if n_missing:
        first = []
        i = 1
        while len(first) < 5 and i <= count:
            if i not in present:
                first.append(name(i))
            i += 1
        more = f" and {n_missing - len(first)} more" if n_missing > len(first) else ""
        raise InputError(path, f"split set of {count} parts is incomplete: missing {', '.join(first)}{more}")
    return [os.fspath(p.with_name(name(i))) for i in range(1, count + 1)]


def read_header(path: str | os.PathLike) -> GGUFHeader:
    """Read the header of a GGUF file or of a whole split set (any part may be given)."""
    parts = split_parts(path)
    version, kv, tensors, data_offset, size = _read_one(parts[0], 0)
    header = GGUFHeader(parts[0], version, kv, tensors, [data_offset], [size], parts)
    for i, part in enumerate(parts[1:], start=1):
        _, _, more, off, sz = _read_one(part, i)
        header.tensors.extend(more)
        header.data_offsets.append(off)
        header.file_sizes.append(sz)
    expected = kv.get("split.tensors.count")
    if len(parts) > 1 and isinstance(expected, int) and expected != len(header.tensors):
        raise InputError(parts[0], f"split set declares {expected} tensors but its parts hold "
                                   f"{len(header.tensors)}")
    names = [t.name for t in header.tensors]
    if len(set(names)) != len(names):
        raise InputError(parts[0], "split set holds the same tensor in more than one part")
    return header
