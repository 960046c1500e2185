"""A candidate quantization measured end to end, and remembered.

:func:`measure` quantizes a base with a plan (and imatrix), validates the
file against the base (structure, plan match, bits per weight, generation
loops, KL divergence) and returns an :class:`Outcome`. Every outcome is
cached under ``<cache>/candidates/`` by (base sha256, plan digest, imatrix
sha256, evaluation settings, gl and llama.cpp versions), so a second run
costs nothing, and a run that is interrupted loses only the candidate in
flight: the quantized file is written through a temporary and removed
afterwards unless it is to be kept. An outcome in which a llama.cpp run
stopped (:data:`RUN_FAILURES`: a generation that timed out on a busy machine,
a perplexity run that crashed) says nothing lasting about the file and is not
cached: the next run measures it again. ``gl floor``, ``gl quantize --guard`` and
``bench/quality.py`` measure through here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

VALIDATORS = ("structure", "plan-match", "bpw", "generation", "kld")
# the generation validator's errors that fail a file: degenerate text on a prompt, or sentence loops on most
COLLAPSE_CODES = ("generation-collapse", "generation-loop")
# the validators' errors that say a llama.cpp run stopped, not what the file is
RUN_FAILURES = ("generation-failed", "kld-failed", "perplexity-failed", "perplexity-base-failed", "validator-failed")


@dataclass
class Outcome:
    """What one candidate measured: size, KL divergence, generation loops, and its errors."""

    key: str
    label: str
    bpw: float
    bytes: int
    kld: dict  # mean, median, p99, p999, max, same_top_p, rms_dp, ppl_ratio (toolchain.llama_eval.KLDivergence)
    loops: float | None  # share of the generation prompts that collapsed (loop, empty or non-words)
    errors: list[str] = field(default_factory=list)  # finding codes of severity error
    seconds: float = 0.0
    sha256: str = ""

    @property
    def lasting(self) -> bool:
        """Whether the outcome says what the file is (every check ran), so it may be remembered."""
        return not any(c in self.errors for c in RUN_FAILURES)

    @property
    def collapsed(self) -> bool:
        """Whether the generation check failed the file."""
        return any(c in self.errors for c in COLLAPSE_CODES)

    def to_dict(self) -> dict:
        return asdict(self)


def plan_digest(plan) -> str:
    """A digest of what a plan makes llama-quantize do (not of the recipe's notes about it)."""
    from gl_plugins.plan.resolve import plan_to_dict

    d = plan_to_dict(plan)
    d.pop("params", None)
    d.pop("recipe", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def settings(chunks: int, ctx: int) -> dict:
    from gl_plugins.validate.generation import Generation

    return {"kld": {"chunks": chunks, "ctx": ctx}, "generation": dict(Generation.defaults)}


def cache_key(base, plan, imatrix, chunks: int, ctx: int, imatrix_id: str | None = None,
              validators: tuple[str, ...] = VALIDATORS) -> str:
    """The candidate's identity. The imatrix counts by its sha256, or by ``imatrix_id`` when the
    caller names it by how it was made (bench/quality.py: gl's calibration imatrix of the base,
    which is the same recipe on every machine, if not always the same bytes). ``validators`` other
    than the full set (a KLD-only measurement) make another candidate."""
    from gl_plugins import __version__
    from gl_plugins.digests import digest
    from gl_plugins.toolchain.llama_eval import _version
    from gl_plugins.toolchain.llamacpp import find_tool
    from gl_plugins.toolchain.texts import digest as text_digest

    if imatrix_id is None and imatrix:
        imatrix_id = digest(imatrix)[0]
    parts = [digest(base)[0], plan_digest(plan), imatrix_id,
             settings(chunks, ctx), text_digest("evaluation"), __version__,
             _version(os.fspath(find_tool("llama-quantize")))]
    if tuple(validators) != VALIDATORS:
        parts.append(sorted(validators))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _cache_dir() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    return cache_root() / "candidates"


def cached(base, plan, imatrix, chunks: int, ctx: int, validators: tuple[str, ...] = VALIDATORS) -> Outcome | None:
    path = _cache_dir() / f"{cache_key(base, plan, imatrix, chunks, ctx, validators=validators)}.json"
    try:
        hit = Outcome(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return hit if hit.lasting else None  # one an earlier gl remembered although a run had stopped


def measure(base, plan, *, label: str, imatrix=None, chunks: int = 4, ctx: int = 512, keep: Path | None = None,
            threads: int | None = None, allow_requantize: bool = False, echo=None,
            validators: tuple[str, ...] = VALIDATORS) -> Outcome:
    """Quantize ``base`` with ``plan``, validate the file, and remember the outcome (see module doc).

    With ``keep`` the quantized file (and its provenance) is left there; otherwise it is removed.
    ``allow_requantize`` lets llama-quantize start from a base that is itself quantized.
    ``validators`` narrows the checks (e.g. without "generation" when only the KLD is wanted: the
    outcome's ``loops`` is then None).
    """
    unknown = sorted(set(validators) - set(VALIDATORS))
    if unknown:
        raise ValueError(f"measure: unknown validators {unknown}; known: {', '.join(VALIDATORS)}")
    from gl_plugins.atomic import atomic_write
    from gl_plugins.digests import digest
    from gl_plugins.quantize.run import quantize
    from gl_plugins.validate.run import validate_file

    key = cache_key(base, plan, imatrix, chunks, ctx, validators=validators)
    hit = cached(base, plan, imatrix, chunks, ctx, validators)
    if hit is not None:
        if keep is not None and not keep.exists():  # measured before: the file alone is made again
            quantize(base, keep, plan, imatrix=imatrix, threads=threads, progress=False, force=True,
                     allow_requantize=allow_requantize, echo=echo)
        return hit
    _cache_dir().mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=_cache_dir(), prefix=".candidate-") as tmp:
        out = keep or Path(tmp) / f"{key}.gguf"
        quantize(base, out, plan, imatrix=imatrix, threads=threads, progress=False, force=True,
                 allow_requantize=allow_requantize, echo=echo)
        report = validate_file(out, base=base, only=tuple(validators), options=settings(chunks, ctx))
        fig = report.figures
        outcome = Outcome(key=key, label=label, bpw=float(fig.get("bpw") or 0.0), bytes=out.stat().st_size,
                          kld=fig.get("kld") or {}, loops=fig.get("loop_share"),
                          errors=sorted({f.code for f in report.findings if f.severity == "error"}),
                          seconds=round(time.monotonic() - t0, 1), sha256=digest(out)[0])
    if outcome.lasting:
        atomic_write(_cache_dir() / f"{key}.json", json.dumps(outcome.to_dict()), parents=True)
    return outcome
