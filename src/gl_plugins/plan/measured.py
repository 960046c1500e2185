"""Quantization error measured on a model's own weights, with ggml's own quantizers.

For every quantizable tensor and candidate type, the ``gl-quant-error`` helper
(``gl_plugins/data/gl_quant_error.c``, built with the llama.cpp tools) reads a
deterministic sample of rows (evenly spaced, row 0 first), dequantizes them,
quantizes them with ``ggml_quantize_chunk`` and the imatrix row weights exactly
as llama-quantize does, dequantizes them back, and sums

    ERR_W = sum (w - q)^2 m_j      NORM_W = sum w^2 m_j

(``m_j`` the importance of input column j, 1 without an imatrix) and the same
sums unweighted. The relative error of a tensor in a type is ERR_W / NORM_W, with one
exception. Where the imatrix puts nearly all of a tensor's importance on a few input
columns (the massive activations that feed Qwen's early ``ffn_down``), ERR_W / NORM_W
measures those columns alone: on Qwen2.5-Coder-1.5B it is 100-400x below the unweighted
error in every type, and a plan built on it puts those tensors at Q2_K. A tensor whose
weighted error is below :data:`CONCENTRATED` of its unweighted one (median over its
types) is therefore given its unweighted error, scaled by the model's median
weighted/unweighted ratio for each type.

Results are cached under ``<cache>/quant-errors/`` in a JSON Lines file keyed
by the model's sha256, the imatrix's sha256, the helper's version (which names
its source digest and ggml's version) and the row sample; a record is appended
after each tensor, so an interrupted run resumes at the next tensor and a rerun
reads everything from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from gl_plugins.errors import GLError, InputError

DEFAULT_ROWS = 128  # rows sampled per tensor (all of them when it has fewer)
CONCENTRATED = 0.1  # weighted/unweighted error below this: the importance sits on a few columns
CACHE_FORMAT = 1
REASONS = {
    "row-length": "the row length is not a multiple of the type's block",
    "needs-imatrix": "made only with an importance matrix, and there is none for this tensor",
    "imatrix-size": "the importance matrix does not fit the tensor",
    "not-quantizable": "ggml cannot quantize to this type",
    "unknown-type": "the helper's ggml does not know this type",
}


@dataclass
class Figures:
    """The four sums of one tensor in one type, over the sampled rows."""

    err_w: float
    norm_w: float
    err: float
    norm: float

    @property
    def relative(self) -> float:
        """Imatrix-weighted relative error ERR_W / NORM_W (unweighted without an imatrix)."""
        return self.err_w / self.norm_w if self.norm_w > 0 else 0.0

    @property
    def relative_unweighted(self) -> float:
        return self.err / self.norm if self.norm > 0 else 0.0

    def to_dict(self) -> dict:
        return {"relative": self.relative, "relative_unweighted": self.relative_unweighted, "err_w": self.err_w,
                "norm_w": self.norm_w, "err": self.err, "norm": self.norm}


@dataclass
class TensorErrors:
    name: str
    shape: tuple[int, ...]
    source_type: str
    rows: int  # rows sampled
    rows_total: int
    weighted: bool  # measured with importances from the imatrix
    errors: dict[str, Figures] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # type -> reason code (see REASONS)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "source_type": self.source_type, "rows": self.rows,
                "rows_total": self.rows_total, "weighted": self.weighted,
                "errors": {t: f.to_dict() for t, f in self.errors.items()}, "skipped": dict(self.skipped)}


@dataclass
class ErrorTable:
    """Per-tensor, per-type errors of one model (and imatrix), and where they were measured. The
    concentrated tensors and the per-type ratios are worked out on first use, once the table is filled."""

    model: str
    imatrix: str | None
    types: list[str]
    rows: int  # the sample size asked for
    helper: str  # the helper's --version line
    cache: Path
    tensors: dict[str, TensorErrors]
    skipped_tensors: dict[str, str] = field(default_factory=dict)  # tensor -> why it was not measured
    measured: int = 0  # tensors measured by this call (the rest came from the cache)
    seconds: float = 0.0

    def error(self, tensor: str, type_: str) -> float | None:
        """The relative error of ``tensor`` in ``type_`` (see the module's note on concentrated
        importance), or None when it was skipped."""
        f = self.tensors[tensor].errors.get(type_)
        if f is None:
            return None
        if tensor in self.concentrated:
            return f.relative_unweighted * self._ratios.get(type_, 1.0)  # no ratio: no error (F16)
        return f.relative

    @cached_property
    def _ratios(self) -> dict[str, float]:
        """Per type, the median weighted/unweighted error ratio over the tensors measured in it."""
        by_type: dict[str, list[float]] = {}
        for t in self.tensors.values():
            for ty, f in t.errors.items():
                if t.weighted and f.relative_unweighted > 0:
                    by_type.setdefault(ty, []).append(f.relative / f.relative_unweighted)
        return {ty: float(np.median(v)) for ty, v in by_type.items()}

    @cached_property
    def concentrated(self) -> frozenset[str]:
        """The tensors whose imatrix importance sits on a few columns: weighted error below
        :data:`CONCENTRATED` of the unweighted one, median over the types measured."""
        out = set()
        for t in self.tensors.values():
            r = [f.relative / f.relative_unweighted for f in t.errors.values() if f.relative_unweighted > 0]
            if t.weighted and r and float(np.median(r)) < CONCENTRATED:
                out.add(t.name)
        return frozenset(out)

    def classes(self) -> dict[str, dict]:
        """Per tensor class (role): the tensors, the mean relative error per type, skipped types."""
        from gl_plugins.model.tensors import role

        out: dict[str, dict] = {}
        for t in self.tensors.values():
            c = out.setdefault(role(t.name), {"tensors": 0, "rows": 0, "errors": {}, "skipped": {}})
            c["tensors"] += 1
            c["rows"] += t.rows
            for ty in t.errors:
                c["errors"].setdefault(ty, []).append(self.error(t.name, ty))
            for ty, why in t.skipped.items():
                c["skipped"].setdefault(ty, {}).setdefault(why, 0)
                c["skipped"][ty][why] += 1
        for c in out.values():
            c["errors"] = {ty: float(np.mean(v)) for ty, v in c["errors"].items()}
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "imatrix": self.imatrix, "types": self.types, "rows": self.rows,
                "helper": self.helper, "cache": os.fspath(self.cache), "measured": self.measured,
                "seconds": round(self.seconds, 3), "classes": self.classes(),
                "tensors": [t.to_dict() for t in self.tensors.values()], "skipped_tensors": self.skipped_tensors,
                "concentrated": sorted(self.concentrated)}


# ---------------------------------------------------------------- inputs

def _types(types) -> list[str]:
    from gl_plugins.plan.recipes import CANDIDATES, producible

    if types is None:
        return list(CANDIDATES)
    names = [t.strip() for t in (types.split(",") if isinstance(types, str) else types) if t.strip()]
    if not names:
        raise GLError("give at least one type to measure")
    out = []
    for n in names:
        t = producible(n, "type")
        if t not in out:
            out.append(t)
    return out


def _importances(imatrix: str, tensors) -> dict[str, np.ndarray]:
    """Per tensor, the importances llama-quantize would pass to ggml (ne0 × n_expert float32)."""
    from gl_plugins.imatrix.formats import read_imatrix

    imx = read_imatrix(imatrix)
    out = {}
    for t in tensors:
        e = imx.entries.get(t.name)
        if e is None:
            continue
        n_expert = t.shape[2] if len(t.shape) > 2 else 1
        if e.size != t.shape[0] * n_expert:
            raise InputError(imatrix, f"holds {e.size} values for {t.name}, which needs {t.shape[0] * n_expert} "
                                      f"(rows of {t.shape[0]}); the imatrix was made for another model")
        v = np.ascontiguousarray(imx.importance(e), dtype="<f4").reshape(-1)
        if not np.isfinite(v).all() or (v < 0).any():
            raise InputError(imatrix, f"the importances of {t.name} hold negative or non-finite values")
        out[t.name] = v
    if not out:
        raise InputError(imatrix, "holds no entry for any quantizable tensor of the model; "
                                  "the imatrix was made for another model")
    return out


def _pre_skip(t, type_: str, has_imatrix: bool) -> str | None:
    """Why a type is not measured for a tensor, decided before the helper runs (as llama-quantize decides)."""
    from gl_plugins.ggml_types import IMATRIX_EXEMPT, NEEDS_IMATRIX, TYPES_BY_NAME
    from gl_plugins.plan.type_choice import GGML_REQUIRES_IMATRIX

    if t.shape[0] % TYPES_BY_NAME[type_].block_size:
        return "row-length"
    if not has_imatrix and (type_ in GGML_REQUIRES_IMATRIX
                            or (type_ in NEEDS_IMATRIX and t.name not in IMATRIX_EXEMPT)):
        return "needs-imatrix"
    return None


def helper_version(helper: Path) -> str:
    import subprocess

    try:
        r = subprocess.run([os.fspath(helper), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise GLError(f"{helper} cannot be run ({e}); rebuild it with `gl toolchain install --force`") from None
    line = r.stdout.strip()
    if r.returncode != 0 or not line.startswith("gl-quant-error "):
        raise GLError(f"{helper} is not gl's quant-error helper; rebuild it with `gl toolchain install --force`")
    return line


# ---------------------------------------------------------------- the cache

def cache_dir() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    return cache_root() / "quant-errors"


def _cache_key(model_shas: list[str], imatrix_sha: str | None, helper: str, rows: int) -> dict:
    return {"format": CACHE_FORMAT, "model_sha256": model_shas, "imatrix_sha256": imatrix_sha, "helper": helper,
            "rows": rows}


def _load(path: Path, key: dict) -> dict[str, dict]:
    """Records by tensor, merged; a last line cut short by a killed run is dropped (and cut off the file)."""
    from gl_plugins.atomic import atomic_write

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]
    records: dict[str, dict] = {}
    good: list[str] = []
    for i, line in enumerate(complete):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if i == 0:
            if rec != {"key": key}:  # another key hashed to this name, or a damaged file: start again
                atomic_write(path, json.dumps({"key": key}) + "\n")
                return {}
        elif isinstance(rec, dict) and isinstance(rec.get("name"), str):
            r = records.setdefault(rec["name"], {**rec, "errors": {}, "skipped": {}})
            r["errors"].update(rec.get("errors") or {})
            r["skipped"].update(rec.get("skipped") or {})
        else:
            continue
        good.append(line)
    if tail or len(good) != len(complete):
        atomic_write(path, "".join(line + "\n" for line in good))
    return records


def _append(path: Path, record: dict) -> None:
    """One complete line per write, so a killed run leaves whole records."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- measuring

def measure_errors(model, imatrix=None, types=None, rows: int = DEFAULT_ROWS, threads: int | None = None,
                   echo=None, progress: bool = True, cached_only: bool = False, facts=None) -> ErrorTable | None:
    """The relative error of every quantizable tensor of ``model`` (a GGUF, or pkg:NAME) in each of ``types``
    (default: the budget recipe's candidates), measured by ggml on ``rows`` sampled rows per tensor,
    imatrix-weighted with ``imatrix``. Cached; see the module docstring. With ``cached_only`` nothing is
    measured: None when the cache lacks a figure. ``facts``: the model's, when the caller has read them."""
    from gl_plugins.atomic import atomic_write
    from gl_plugins.digests import digest
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.model.gguf_header import read_header, split_parts
    from gl_plugins.model.tensors import quantizable, weight_order_key
    from gl_plugins.toolchain.llamacpp import QUANT_ERROR_HELPER, default_threads, find_tool
    from gl_plugins.toolchain.samples import local_model

    say = echo or (lambda _m: None)
    start = time.monotonic()
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise GLError(f"the row sample must be a whole number of rows above 0, not {rows!r}")
    type_list = _types(types)
    model = local_model(model)
    if not model.is_file():
        raise InputError(model, "file not found" if not model.exists() else "is not a file")
    facts = facts or facts_from_gguf(model)
    parts = split_parts(model)
    part_of = {t.name: parts[t.part] for t in read_header(model).tensors} if len(parts) > 1 \
        else {t.name: parts[0] for t in facts.tensors}
    tensors = sorted(quantizable(facts), key=lambda t: weight_order_key(t.name))
    if imatrix is not None and not Path(imatrix).is_file():
        raise InputError(imatrix, "importance matrix not found" if not Path(imatrix).exists() else "is not a file")
    weights = _importances(os.fspath(imatrix), tensors) if imatrix is not None else {}
    helper = find_tool(QUANT_ERROR_HELPER)
    version = helper_version(helper)

    key = _cache_key([digest(p)[0] for p in parts], digest(imatrix)[0] if imatrix is not None else None,
                     version, rows)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    cache = cache_dir() / f"{name}.jsonl"
    if not cache.exists():
        atomic_write(cache, json.dumps({"key": key}) + "\n", parents=True)
    records = _load(cache, key)

    table = ErrorTable(os.fspath(model), os.fspath(imatrix) if imatrix is not None else None, type_list, rows,
                       version, cache, {})
    jobs: list[tuple] = []  # (tensor, types to measure)
    for t in tensors:
        if t.bytes is None:
            table.skipped_tensors[t.name] = f"its type {t.type} is unknown to gl"
            continue
        if len(t.name.split()) != 1 or t.name != t.name.strip():
            table.skipped_tensors[t.name] = "its name holds white space"
            continue
        has = t.name in weights
        te = TensorErrors(t.name, tuple(t.shape), t.type, min(rows, _n_rows(t.shape)), _n_rows(t.shape), has)
        rec = records.get(t.name, {})
        te.errors = {ty: Figures(*rec["errors"][ty]) for ty in type_list if ty in rec.get("errors", {})}
        te.skipped = {ty: rec["skipped"][ty] for ty in type_list if ty in rec.get("skipped", {})}
        todo = []
        for ty in type_list:
            if ty in te.errors or ty in te.skipped:
                continue
            why = _pre_skip(t, ty, has)
            if why:
                te.skipped[ty] = why
            else:
                todo.append(ty)
        table.tensors[t.name] = te
        if todo:
            jobs.append((t, todo))
    if jobs and cached_only:
        return None
    if jobs:
        n_threads = threads or default_threads()
        say(f"measuring {len(jobs)} of {len(table.tensors)} tensors of {model.name} in {len(type_list)} types "
            f"({rows} rows each, {n_threads} thread{'s' if n_threads > 1 else ''}) ...")
        _run(helper, jobs, weights, part_of, table, cache, n_threads, say, progress)
    table.seconds = time.monotonic() - start
    return table


def _n_rows(shape) -> int:
    n = 1
    for d in shape[1:]:
        n *= int(d)
    return n


def _run(helper: Path, jobs, weights, part_of, table: ErrorTable, cache: Path, threads: int, say, progress) -> None:
    from tqdm import tqdm

    from gl_plugins.toolchain.llamacpp import run_lines

    by_file: dict[str, list] = {}
    for t, todo in jobs:
        by_file.setdefault(part_of[t.name], []).append((t, todo))
    with tempfile.TemporaryDirectory(prefix="gl-quant-error-") as tmp, \
            tqdm(total=len(jobs), desc="measuring errors", unit="tensor", file=sys.stderr,
                 disable=None if progress else True, leave=False) as bar:
        logged = [0]
        pending: dict[str, dict] = {}

        def on_line(line: str) -> None:
            words = line.split()
            if len(words) == 8 and words[0] == "err":
                pending.setdefault(words[1], {"errors": {}, "skipped": {}})["errors"][words[2].upper()] = \
                    [float(w) for w in words[4:8]]
            elif len(words) == 4 and words[0] == "skip":
                pending.setdefault(words[1], {"errors": {}, "skipped": {}})["skipped"][words[2].upper()] = words[3]
            elif len(words) == 4 and words[0] == "done":
                got = pending.pop(words[1], {"errors": {}, "skipped": {}})
                te = table.tensors[words[1]]
                te.rows, te.rows_total = int(words[2]), int(words[3])
                _append(cache, {"name": te.name, "shape": list(te.shape), "source_type": te.source_type,
                                "rows": te.rows, "rows_total": te.rows_total, "weighted": te.weighted, **got})
                te.errors.update({ty: Figures(*v) for ty, v in got["errors"].items()})
                te.skipped.update(got["skipped"])
                table.measured += 1
                bar.update(1)
                if progress and bar.disable and bar.n * 10 // bar.total > logged[0]:  # no terminal: every 10 %
                    logged[0] = bar.n * 10 // bar.total
                    say(f"measuring errors: {bar.n}/{bar.total} tensors")

        for file, file_jobs in by_file.items():
            lines = []
            for i, (t, todo) in enumerate(file_jobs):
                if t.name in weights:
                    p = Path(tmp) / f"imatrix-{i}.f32"
                    p.write_bytes(weights[t.name].tobytes())
                    lines.append(f"imatrix {p}")
                else:
                    lines.append("imatrix -")
                lines.append(f"tensor {t.name} {table.rows} {' '.join(todo)}")
            job_file = Path(tmp) / "jobs.txt"
            job_file.write_text("\n".join(lines) + "\n")
            run_lines([os.fspath(helper), file, os.fspath(job_file), str(threads)], on_line)

