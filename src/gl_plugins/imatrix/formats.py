"""Importance matrices: one in-memory form for llama.cpp's two imatrix formats.

**GGUF imatrix** (what ``llama-imatrix`` writes by default): ``general.type =
"imatrix"``, keys ``imatrix.datasets``, ``imatrix.chunk_count``,
``imatrix.chunk_size``; per weight ``W`` the F32 tensors ``W.in_sum2`` (sum of
squared activations, ``ne0`` per matrix, one matrix per expert), ``W.counts``
(tokens per matrix) and optionally ``W.in_sum``.

**Legacy .dat**: ``int32 n_entries``; per entry ``int32 len, name[len], int32
ncall, int32 nval, float32 values[nval]`` where values are mean-of-squares ×
``ncall``; an optional trailer ``int32 chunk_count, int32 len, dataset[len]``.
It has no per-expert counts, no ``in_sum`` and no chunk size.

Readers check every count and length against the bytes that remain before
using it, so a hostile file costs no memory; the value arrays are read-only
views of a memory map, never copies. Writers stream entry by entry into a
temporary file that replaces the target only when complete.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from gl_plugins.atomic import atomic_file
from gl_plugins.errors import InputError, open_input

FORMATS = ("gguf", "dat")
# Token counts beyond this are not from a calibration run (llama-imatrix divides
# them into int32 chunk numbers); a file claiming them is corrupt.
MAX_COUNT = 2**31 - 1
DEFAULT_CHUNK_SIZE = 512  # llama-imatrix's default context, used when a .dat gives none
GGUF_ALIGNMENT = 32
_F32 = 0  # ggml type id


@dataclass
class Entry:
    """Importance data for one weight.

    ``sums`` has one row per matrix (expert): GGUF ``in_sum2`` as stored; for a
    .dat file the stored values (mean of squares × ncall) as one row. ``counts``
    holds one count per row: tokens for GGUF, ``ncall`` (chunks) for .dat.
    """

    name: str
    sums: np.ndarray  # float32, (n_mat, ne0), read-only view of the file
    counts: np.ndarray  # int64, (n_mat,)
    in_sum: np.ndarray | None = None  # float32, like ``sums``; GGUF only
    offset: int = 0  # byte offset of the values in the file

    @property
    def size(self) -> int:
        """Number of values; llama-quantize requires ``ne0 × n_expert`` of the weight."""
        return int(self.sums.size)

    @property
    def n_mat(self) -> int:
        return int(self.sums.shape[0])

    def rows(self, ne0: int) -> np.ndarray:
        """The values as rows of ``ne0`` (one per expert), still a view."""
        return self.sums.reshape(-1, ne0)

    def row_counts(self, n_rows: int) -> np.ndarray:
        """The count that applies to each of ``n_rows`` rows."""
        if len(self.counts) == n_rows:
            return self.counts
        return np.full(n_rows, int(self.counts.max()) if len(self.counts) else 0, dtype=np.int64)


@dataclass
class IMatrix:
    path: str
    format: str  # "gguf" | "dat"
    entries: dict[str, Entry]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int | None = None
    chunk_size: int | None = None  # None for .dat: the format does not record it
    missing_keys: list[str] = field(default_factory=list)  # GGUF metadata llama-quantize needs
    ignored: list[str] = field(default_factory=list)  # GGUF tensors that are not imatrix data
    file_size: int = 0

    def importance(self, entry: Entry) -> np.ndarray:
        """Mean squared activation per value, as llama-quantize computes it (float32, new array).

        GGUF: ``in_sum2 / count``, with 1.0 for matrices whose count is 0. Legacy:
        ``values / ncall`` (values unchanged when ncall is 0).
        """
        counts = entry.counts.astype(np.float32)
        with np.errstate(all="ignore"):  # NaN/Inf in a file are reported by entry_stats, not warned about
            if self.format == "gguf":
                out = np.ones(entry.sums.shape, dtype=np.float32)
                used = counts > 0
                np.divide(entry.sums, counts[:, None], out=out, where=used[:, None])
                return out
            ncall = float(counts[0]) if len(counts) else 0.0
            return entry.sums / np.float32(ncall) if ncall > 0 else np.array(entry.sums, dtype=np.float32)


# ------------------------------------------------------------------ reading

def _open_map(path: str) -> tuple[mmap.mmap | None, int]:
    with open_input(path, "an imatrix file") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None, 0
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size


def read_imatrix(path: str | os.PathLike) -> IMatrix:
    """Read a GGUF or legacy .dat imatrix; InputError naming the byte offset on bad input."""
    path = os.fspath(path)
    mm, size = _open_map(path)
    if mm is None:
        raise InputError(path, "is empty, not an imatrix file")
    if size >= 4 and mm[:4] == b"GGUF":
        return _read_gguf(path, mm, size)
    return _read_dat(path, mm, size)


def _read_dat(path: str, mm: mmap.mmap, size: int) -> IMatrix:
    pos = 0

    def i32(what: str) -> int:
        nonlocal pos
        if pos + 4 > size:
            raise InputError(path, f"file is truncated: {what} needs 4 bytes but only {size - pos} remain",
                             offset=pos)
        (v,) = struct.unpack_from("<i", mm, pos)
        pos += 4
        return v

    n_entries = i32("the entry count")
    if n_entries < 1:
        raise InputError(path, f"entry count is {n_entries}; a legacy imatrix holds at least one entry "
                               f"(or this is not an imatrix file)", offset=0)
    # every entry takes at least 16 bytes (name length, ncall, nval, one value)
    if n_entries > (size - 4) // 16:
        raise InputError(path, f"claims {n_entries} entries, more than its {size} bytes can hold "
                               f"(or this is not an imatrix file)", offset=0)
    entries: dict[str, Entry] = {}
    for i in range(n_entries):
        start = pos
        n = i32(f"the name length of entry #{i}")
        if n < 0 or n > size - pos:
            raise InputError(path, f"entry #{i} claims a name of {n} bytes but only {size - pos} remain "
                                   f"in the file", offset=start)
        try:
            name = bytes(mm[pos:pos + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(path, f"the name of entry #{i} is not valid UTF-8", offset=pos) from None
        pos += n
        ncall_at = pos
        ncall = i32(f"the call count of {name}")
        if ncall < 0:
            raise InputError(path, f"entry {name} has a negative call count {ncall}", offset=ncall_at)
        nval_at = pos
        nval = i32(f"the value count of {name}")
        if nval < 1:
            raise InputError(path, f"entry {name} claims {nval} values; an entry holds at least one",
                             offset=nval_at)
        if nval > (size - pos) // 4:
            raise InputError(path, f"entry {name} claims {nval} values but only {(size - pos) // 4} fit in "
                                   f"the rest of the file", offset=nval_at)
        if name in entries:
            raise InputError(path, f"entry {name} appears twice", offset=start)
        sums = np.frombuffer(mm, dtype="<f4", count=nval, offset=pos).reshape(1, nval)
        entries[name] = Entry(name, sums, np.array([ncall], dtype=np.int64), None, pos)
        pos += 4 * nval
    chunk_count = None
    datasets: list[str] = []
    if pos < size:
        chunk_count = i32("the chunk count")
        if chunk_count < 0:
            raise InputError(path, f"the chunk count is negative ({chunk_count})", offset=pos - 4)
        if pos < size:
            len_at = pos
            n = i32("the dataset name length")
            if n < 0 or n > size - pos:
                raise InputError(path, f"the dataset name claims {n} bytes but only {size - pos} remain",
                                 offset=len_at)
            if n:
                datasets.append(bytes(mm[pos:pos + n]).decode("utf-8", errors="replace"))
            pos += n
        if pos != size:
            raise InputError(path, f"{size - pos} unexpected bytes follow the dataset name; the entry "
                                   f"count or a length is wrong", offset=pos)
    return IMatrix(path, "dat", entries, datasets, chunk_count, None, [], [], size)


def _read_gguf(path: str, mm: mmap.mmap, size: int) -> IMatrix:
    from gl_plugins.model.gguf_header import read_header

    h = read_header(path)
    if len(h.parts) > 1:  # offsets below are into this one file's data
        raise InputError(path, f"is part of a split set of {len(h.parts)} files; an imatrix is one file "
                               f"(llama-quantize reads no split imatrix)", offset=0)
    kv = h.kv
    data_offset = h.data_offsets[0]
    kind = kv.get("general.type")
    names = {t.name for t in h.tensors}
    has_data = any(n.endswith(".in_sum2") for n in names)
    if kind != "imatrix" and not has_data:
        what = (f"a {kv['general.architecture']} model" if isinstance(kv.get("general.architecture"), str)
                else f"a GGUF file of type {kind!r}" if kind else "a GGUF file without imatrix data")
        raise InputError(path, f"is {what}, not an imatrix (no general.type = imatrix, no .in_sum2 tensors)",
                         offset=0)
    missing = [k for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size") if k not in kv]
    datasets = kv.get("imatrix.datasets", [])
    if hasattr(datasets, "load"):
        datasets = datasets.load()
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise InputError(path, "imatrix.datasets is not a list of strings")
    chunk_count = _uint_key(path, kv, "imatrix.chunk_count")
    chunk_size = _uint_key(path, kv, "imatrix.chunk_size")

    by_name = {t.name: t for t in h.tensors}
    entries: dict[str, Entry] = {}
    ignored = []
    for t in h.tensors:
        if t.name.endswith(".in_sum2"):
            base = t.name[:-len(".in_sum2")]
        elif t.name.endswith(".counts") or t.name.endswith(".in_sum"):
            base = t.name.rsplit(".", 1)[0]
            if base + ".in_sum2" not in by_name:
                raise InputError(path, f"{t.name} has no matching {base}.in_sum2 tensor",
                                 offset=data_offset + t.offset)
            continue
        else:
            ignored.append(t.name)
            continue
        counts_t = by_name.get(base + ".counts")
        if counts_t is None:
            raise InputError(path, f"{t.name} has no matching {base}.counts tensor", offset=data_offset + t.offset)
        for x in (t, counts_t):
            if x.type_id != _F32:
                raise InputError(path, f"{x.name} is {x.type_name}; imatrix tensors must be F32",
                                 offset=data_offset + x.offset)
        n_val, n_mat = t.n_elements, counts_t.n_elements
        if n_val % n_mat:
            raise InputError(path, f"{t.name} holds {n_val} values, not a multiple of the {n_mat} counts in "
                                   f"{counts_t.name}", offset=data_offset + t.offset)
        raw = np.frombuffer(mm, dtype="<f4", count=n_mat, offset=data_offset + counts_t.offset)
        counts = _check_counts(path, counts_t.name, raw, data_offset + counts_t.offset)
        sums = np.frombuffer(mm, dtype="<f4", count=n_val, offset=data_offset + t.offset)
        sums = sums.reshape(n_mat, n_val // n_mat)
        in_sum = None
        s_t = by_name.get(base + ".in_sum")
        if s_t is not None:
            if s_t.type_id != _F32 or s_t.n_elements != n_val:
                raise InputError(path, f"{s_t.name} must be F32 with the {n_val} values of {t.name}",
                                 offset=data_offset + s_t.offset)
            in_sum = np.frombuffer(mm, dtype="<f4", count=n_val, offset=data_offset + s_t.offset)
            in_sum = in_sum.reshape(sums.shape)
        entries[base] = Entry(base, sums, counts, in_sum, data_offset + t.offset)
    if not entries:
        raise InputError(path, "holds no imatrix entries (no .in_sum2 tensors)", offset=0)
    return IMatrix(path, "gguf", entries, list(datasets), chunk_count, chunk_size, missing, ignored, size)


def _uint_key(path: str, kv: dict, key: str) -> int | None:
    v = kv.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(path, f"{key} is {v!r}, not a non-negative whole number")
    if v > MAX_COUNT:  # no calibration run records this many; the formats store 32-bit numbers
        raise InputError(path, f"{key} is {v}, absurdly large (more than {MAX_COUNT})")
    return v


def _check_counts(path: str, name: str, raw: np.ndarray, offset: int) -> np.ndarray:
    with np.errstate(all="ignore"):
        bad = ~np.isfinite(raw) | (raw < 0) | (raw > MAX_COUNT) | (raw != np.round(raw))
    if bad.any():
        j = int(np.argmax(bad))
        v = float(raw[j])
        why = ("negative" if v < 0 else "not finite" if not math.isfinite(v)
               else "absurdly large" if v > MAX_COUNT else "not a whole number")
        raise InputError(path, f"{name}[{j}] is {v:g}, {why} for a token count", offset=offset + 4 * j)
    return raw.astype(np.int64)


# ------------------------------------------------------------------ statistics

@dataclass
class EntryStats:
    """What ``gl imatrix info`` shows per entry; importance is the normalized value."""

    name: str
    ne0: int
    n_mat: int
    counts: list[int]
    min: float
    mean: float
    max: float
    zeros: int
    nans: int
    infs: int
    negatives: int
    zero_count_mats: int

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        for k in ("min", "mean", "max"):
            d[k] = _json_float(d[k])
        return d


def _json_float(x: float):
    return x if math.isfinite(x) else str(x)


def entry_stats(imx: IMatrix, entry: Entry) -> EntryStats:
    """Statistics of one entry, computed over matrices with data (count > 0)."""
    v = entry.sums
    used = entry.counts > 0 if imx.format == "gguf" else np.ones(entry.n_mat, dtype=bool)
    nans = int(np.isnan(v).sum())
    infs = int(np.isinf(v).sum())
    negatives = int((v < 0).sum())
    zeros = int((v == 0).sum())
    if used.any():
        imp = imx.importance(entry)[used]
        with np.errstate(invalid="ignore", over="ignore"):
            mn, mx = float(np.min(imp)), float(np.max(imp))
            mean = float(np.mean(imp, dtype=np.float64))
    else:
        mn = mean = mx = float("nan")
    return EntryStats(entry.name, int(v.shape[1]), entry.n_mat, [int(c) for c in entry.counts], mn, mean, mx,
                      zeros, nans, infs, negatives, int((~used).sum()) if imx.format == "gguf" else 0)


# ------------------------------------------------------------------ writing

def _atomic(path: str, write) -> None:
    with atomic_file(path) as f:
        write(f)


def _gguf_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


@dataclass
class OutEntry:
    """One entry to write: its shape up front, its data on demand (so writing streams)."""

    name: str
    n_mat: int
    ne0: int
    has_in_sum: bool
    load: object  # () -> (sums (n_mat, ne0), counts (n_mat,), in_sum or None)


def write_gguf(path: str | os.PathLike, entries: list[OutEntry], *, datasets: list[str], chunk_count: int,
               chunk_size: int) -> None:
    """Write a GGUF imatrix as llama-imatrix does (F32 ``in_sum2`` [ne0, n_mat], ``counts`` [1, n_mat])."""
    path = os.fspath(path)
    kv = (_gguf_str("general.type") + struct.pack("<I", 8) + _gguf_str("imatrix")
          + _gguf_str("imatrix.datasets") + struct.pack("<IIQ", 9, 8, len(datasets))
          + b"".join(_gguf_str(d) for d in datasets)
          + _gguf_str("imatrix.chunk_count") + struct.pack("<II", 4, chunk_count)
          + _gguf_str("imatrix.chunk_size") + struct.pack("<II", 4, chunk_size))
    infos = []  # (name, shape ne0-first, nbytes)
    for e in entries:
        if e.has_in_sum:
            infos.append((e.name + ".in_sum", (e.ne0, e.n_mat), e.ne0 * e.n_mat * 4))
        infos.append((e.name + ".in_sum2", (e.ne0, e.n_mat), e.ne0 * e.n_mat * 4))
        infos.append((e.name + ".counts", (1, e.n_mat), e.n_mat * 4))
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(infos), 4) + kv)
    offset = 0
    for name, shape, nbytes in infos:
        head += _gguf_str(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
        head += struct.pack("<IQ", _F32, offset)
        offset += -(-nbytes // GGUF_ALIGNMENT) * GGUF_ALIGNMENT
    head += b"\0" * (-len(head) % GGUF_ALIGNMENT)

    def write(f):
        f.write(head)
        for e in entries:
            sums, counts, in_sum = e.load()
            arrays = ([in_sum] if e.has_in_sum else []) + [sums, np.asarray(counts, dtype=np.float32)]
            for a in arrays:
                _write_array(f, a)
                f.write(b"\0" * (-a.size * 4 % GGUF_ALIGNMENT))

    _atomic(path, write)


def _write_array(f, a) -> None:
    a = np.ascontiguousarray(a, dtype="<f4").reshape(-1)
    f.write(memoryview(a).cast("B"))


def write_dat(path: str | os.PathLike, entries, *, chunk_count: int, dataset: str | None) -> None:
    """Write a legacy imatrix. ``entries`` yields ``(name, values (float32), ncall)``, one at a time."""
    path = os.fspath(path)

    def write(f):
        f.write(struct.pack("<i", 0))  # the entry count, rewritten at the end
        n = 0
        for name, values, ncall in entries:
            b = name.encode("utf-8")
            values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
            f.write(struct.pack("<i", len(b)) + b + struct.pack("<ii", int(ncall), values.size))
            _write_array(f, values)
            n += 1
        ds = (dataset or "").encode("utf-8")
        f.write(struct.pack("<ii", int(chunk_count), len(ds)) + ds)
        f.seek(0)
        f.write(struct.pack("<i", n))

    _atomic(path, write)


# ------------------------------------------------------------------ conversion

def convert(imx: IMatrix, out: str | os.PathLike, to: str, chunk_size: int | None = None) -> list[str]:
    """Write ``imx`` to ``out`` in format ``to``; returns warnings about what the target cannot hold.

    The importance llama-quantize derives from the file is kept (to float32 rounding).
    ``chunk_size`` is the tokens per chunk assumed for a .dat source (which does not
    record it), or used for a GGUF source that lacks it.
    """
    if to not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    return (_to_dat if to == "dat" else _to_gguf)(imx, os.fspath(out), chunk_size)


def _to_dat(imx: IMatrix, out: str, chunk_size: int | None) -> list[str]:
    warnings = []
    if imx.format == "dat":
        write_dat(out, ((e.name, e.sums, e.counts[0]) for e in imx.entries.values()),
                  chunk_count=imx.chunk_count or 0, dataset=imx.datasets[-1] if imx.datasets else None)
        return warnings
    cs = chunk_size or imx.chunk_size
    if not cs:
        cs = DEFAULT_CHUNK_SIZE
        warnings.append(f"the file records no chunk size; assumed {cs} tokens per chunk for the call counts")
    empty = [e.name for e in imx.entries.values() if not (e.counts > 0).any()]
    per_expert = [e.name for e in imx.entries.values() if len(set(e.counts.tolist())) > 1]
    if empty:
        warnings.append(f"{len(empty)} entries have no data (all counts 0) and are left out, as llama-imatrix "
                        f"does for this format: {', '.join(empty[:5])}{' …' if len(empty) > 5 else ''}")
    if per_expert:
        warnings.append(f"{len(per_expert)} entries have per-expert counts, which the legacy format cannot "
                        f"hold; experts with count 0 get importance 1 (what llama-quantize uses for them)")
    if any(e.in_sum is not None for e in imx.entries.values()):
        warnings.append("in_sum (sum of activations) is dropped: the legacy format cannot hold it")
    warnings.append("the chunk size is dropped: the legacy format cannot hold it")
    if len(imx.datasets) > 1:
        warnings.append(f"only the last of {len(imx.datasets)} dataset names is kept")

    def entries():
        for e in imx.entries.values():
            if e.name in empty:
                continue
            ncall = _calls(int(e.counts.max()), cs)
            with np.errstate(all="ignore"):
                values = imx.importance(e) * np.float32(ncall)
            yield e.name, values, ncall

    write_dat(out, entries(), chunk_count=imx.chunk_count or 0,
              dataset=imx.datasets[-1] if imx.datasets else None)
    return warnings


def _calls(count: int, chunk_size: int) -> int:
    """llama-imatrix's legacy ncall, ceil(tokens / chunk size), from a count stored as float32.

    Above 2^24 tokens float32 rounds the count, so a whole number of chunks can read
    back a little larger; the smaller call count wins when it rounds to the same float.
    """
    n = -(-count // chunk_size)
    if n > 1 and np.float32((n - 1) * chunk_size) == np.float32(count):
        n -= 1
    return n


def _to_gguf(imx: IMatrix, out: str, chunk_size: int | None) -> list[str]:
    warnings = []
    if imx.format == "gguf":
        cs = imx.chunk_size if imx.chunk_size is not None else (chunk_size or DEFAULT_CHUNK_SIZE)
        items = [OutEntry(e.name, e.n_mat, e.sums.shape[1], e.in_sum is not None,
                          (lambda e=e: (e.sums, e.counts, e.in_sum))) for e in imx.entries.values()]
        if imx.missing_keys:
            warnings.append(f"added the missing metadata {', '.join(imx.missing_keys)}")
        write_gguf(out, items, datasets=imx.datasets, chunk_count=imx.chunk_count or 0, chunk_size=cs)
        return warnings
    cs = chunk_size or DEFAULT_CHUNK_SIZE
    if not chunk_size:
        warnings.append(f"the legacy format records no chunk size; assumed {cs} tokens per chunk "
                        f"(the importance llama-quantize uses does not depend on it)")
    zero = [e.name for e in imx.entries.values() if e.counts[0] == 0]
    if zero:
        warnings.append(f"{len(zero)} entries have call count 0; written with one chunk's count so that "
                        f"llama-quantize still reads their values unchanged")

    for e in imx.entries.values():  # GGUF counts are tokens: calls × tokens per chunk must stay a count
        if max(int(e.counts[0]), 1) * cs > MAX_COUNT:
            raise InputError(imx.path, f"entry {e.name} records {int(e.counts[0])} calls; at {cs} tokens per "
                                       f"chunk that is more than the {MAX_COUNT} tokens a GGUF imatrix count "
                                       f"can hold", offset=e.offset - 8)

    def load(e):
        ncall = max(int(e.counts[0]), 1)
        with np.errstate(all="ignore"):
            return e.sums * np.float32(cs), np.array([ncall * cs]), None

    items = [OutEntry(e.name, 1, e.size, False, (lambda e=e: load(e))) for e in imx.entries.values()]
    chunks = imx.chunk_count if imx.chunk_count is not None else max(int(e.counts[0]) for e in imx.entries.values())
    write_gguf(out, items, datasets=imx.datasets, chunk_count=chunks, chunk_size=cs)
    return warnings
