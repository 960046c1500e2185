"""The floor search: the smallest stock file and the smallest budget plan that pass the gates.

Candidates come from two places:

- **stock**: llama.cpp's ladder of file types (:data:`gl_plugins.plan.recipes.STOCK_LADDER`)
  whose mixture of this model falls in the bpw range, smallest first. Types that give
  the very same mixture (a 640-wide model falls back alike in several) are measured
  once. The ladder is bisected, on the premise that a larger stock file is no worse;
  the floor found is measured to pass and the type below it to fail. ``walk`` measures
  every type from the smallest up to the first that passes instead.
- **budget**: gl's ``budget`` recipe at a target bpw. The first target is the stock
  floor's size (else the top of the range); then the target is interpolated, on the
  log of the mean KLD, between the largest failing and the smallest passing target
  measured so far (from the stock curve while there is only one), and each guess is
  checked one ``tolerance`` below (or above). With ``guide`` the first target is the
  smallest whose estimated KLD passes, then one ``tolerance`` above it if that fails. A
  first target that fails is followed by the stock floor's size, then the top of the
  range. The search stops when the passing and the failing target are within
  ``tolerance`` bpw.

Before a candidate that needs importance data is measured, the imatrix is held
against its plan (the coverage audit of ``gl imatrix audit``); tensors it does not
cover are pinned to the cheapest type that needs no imatrix (the audit's remedy), and
the candidate says so. Every candidate is measured by
:func:`gl_plugins.validate.candidates.measure` and so cached by (base sha256, plan
digest, imatrix sha256, evaluation settings): a rerun, with other gates or a wider
range, measures only what it has not seen.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins.errors import GLError, InputError

KINDS = ("stock", "budget")
FLOAT_TYPES = ("F32", "F16", "BF16", "F64")
DEFAULT_RANGE = (1.5, 5.0)
DEFAULT_TOLERANCE = 0.1  # bpw between the budget floor and the largest failing target
MARGIN = 256 << 20  # free bytes kept beyond the largest candidate


class NoFloor(GLError):
    """No candidate in the range passes the gates (exit status 1); ``floor`` holds what was measured."""

    exit_code = 1

    def __init__(self, message: str, floor: "Floor"):
        super().__init__(message)
        self.floor = floor


@dataclass(frozen=True)
class Gates:
    """What a file must measure to pass: mean KLD, optionally p99 KLD, and the share of
    generation prompts that collapse (loop, empty or non-words)."""

    max_kld: float = 0.3
    max_p99: float | None = None
    max_loops: float | None = 0.5

    def judge(self, outcome) -> list[str]:
        """Why ``outcome`` (a validate.candidates.Outcome) fails the gates; empty when it passes.

        A file whose structure, tensor types or size break the plan fails whatever it measures.
        The kld validator's own limits do not count: these gates replace them."""
        from gl_plugins.validate.candidates import COLLAPSE_CODES

        why = []
        broken = [c for c in outcome.errors if c not in COLLAPSE_CODES and c != "kld-limit"]
        if broken:
            why.append("invalid file: " + ", ".join(broken))
        mean, p99 = outcome.kld.get("mean"), outcome.kld.get("p99")
        if not _finite(mean):
            why.append("no KL divergence measured")
        else:
            if mean > self.max_kld:
                why.append(f"mean KLD {mean:.4f} > {self.max_kld:g}")
            if self.max_p99 is not None and (not _finite(p99) or p99 > self.max_p99):
                why.append(f"p99 KLD {p99:.3f} > {self.max_p99:g}")
        if self.max_loops is not None and outcome.loops is not None and outcome.loops > self.max_loops:
            why.append(f"loops {outcome.loops:.2f} > {self.max_loops:g}")
        return why

    def describe(self) -> str:
        parts = [f"mean KLD <= {self.max_kld:g}"]
        if self.max_p99 is not None:
            parts.append(f"p99 KLD <= {self.max_p99:g}")
        if self.max_loops is not None:
            parts.append(f"loops <= {self.max_loops:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"max_kld": self.max_kld, "max_p99": self.max_p99, "max_loops": self.max_loops}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class Candidate:
    """One file the search considered: its plan, and what it measured (if it was measured)."""

    kind: str  # stock | budget
    name: str  # the stock type, or "budget@2.90"
    plan: object  # plan.resolve.TensorPlan, with the remedy's pins when there are any
    bpw: float  # as planned
    bytes: int  # as planned
    target: float | None = None  # budget: the target bpw
    same_as: list[str] = field(default_factory=list)  # stock types that make the very same mixture
    remedy: str | None = None  # the imatrix remedy applied, in words
    outcome: object | None = None  # validate.candidates.Outcome once measured
    why: list[str] = field(default_factory=list)  # the gates it fails
    cached: bool = False
    predicted: float | None = None  # --guide: the mean KLD the quant-error estimate gave before measuring

    @property
    def measured(self) -> bool:
        return self.outcome is not None

    @property
    def passed(self) -> bool:
        return self.outcome is not None and not self.why

    @property
    def verdict(self) -> str:
        return "not measured" if self.outcome is None else ("pass" if not self.why else "fail")

    @property
    def mean_kld(self) -> float | None:
        return self.outcome.kld.get("mean") if self.outcome else None

    def to_dict(self) -> dict:
        from gl_plugins.validate.candidates import plan_digest

        o = self.outcome
        d = {"kind": self.kind, "name": self.name, "plan_digest": plan_digest(self.plan),
             "bpw": round(o.bpw if o else self.bpw, 4), "bytes": o.bytes if o else self.bytes,
             "verdict": self.verdict, "why": self.why}
        if self.kind == "stock":
            d["type"] = self.name
            d["same_as"] = self.same_as
        else:
            d["target"] = self.target
        if o is not None:
            d.update({"kld": o.kld, "loops": o.loops, "errors": o.errors, "seconds": o.seconds,
                      "cached": self.cached, "sha256": o.sha256})
        d["remedy"] = self.remedy
        if self.predicted is not None:
            d["predicted_kld"] = round(self.predicted, 6)
        return d


@dataclass
class Floor:
    """What ``find_floor`` measured, and the smallest passing file of each kind."""

    model: str
    imatrix: str | None
    gates: Gates
    low: float
    high: float
    candidates: list[Candidate]  # in the order they were considered
    stock: Candidate | None
    budget: Candidate | None
    chunks: int = 4
    seconds: float = 0.0
    kept: str | None = None

    @property
    def smallest(self) -> Candidate | None:
        found = [c for c in (self.stock, self.budget) if c is not None]
        return min(found, key=lambda c: c.outcome.bytes) if found else None

    @property
    def gain_bytes(self) -> int | None:
        """How many bytes the budget floor saves against the stock floor (negative: it is larger)."""
        if self.stock is None or self.budget is None:
            return None
        return self.stock.outcome.bytes - self.budget.outcome.bytes

    def best(self) -> Candidate | None:
        """The measured candidate of lowest mean KLD (shown when none passes)."""
        measured = [c for c in self.candidates if c.measured and _finite(c.mean_kld)]
        return min(measured, key=lambda c: c.mean_kld) if measured else None

    def to_dict(self) -> dict:
        def o(c, extra):
            return None if c is None else {**extra, "bpw": round(c.outcome.bpw, 4), "bytes": c.outcome.bytes,
                                           "kld_mean": c.mean_kld}

        return {
            "model": self.model, "imatrix": self.imatrix, "gates": self.gates.to_dict(),
            "range": [self.low, self.high], "chunks": self.chunks,
            "floor": {"stock": o(self.stock, {"type": self.stock and self.stock.name}),
                      "budget": o(self.budget, {"target": self.budget and self.budget.target})},
            "gain_bytes": self.gain_bytes, "kept": self.kept, "seconds": round(self.seconds, 1),
            "candidates": [c.to_dict() for c in self.candidates if c.measured],
            "not_measured": [c.name for c in self.candidates if not c.measured],
        }


def check_base(model: Path, facts, allow_requantized: bool) -> bool:
    """Whether the base holds quantized weights; InputError unless ``allow_requantized``."""
    from gl_plugins.model.tensors import quantizable

    weights = quantizable(facts)
    quantized = [t for t in weights if t.type.upper() not in FLOAT_TYPES]
    if quantized and not allow_requantized:
        kinds = ", ".join(sorted({t.type for t in quantized}))
        raise InputError(model, f"is already quantized ({len(quantized)} of {len(weights)} weights are {kinds}), "
                                f"so a floor found from it is relative to it, not to the full-precision model; "
                                f"give the F16/BF16 GGUF, or pass --allow-requantized to search from it anyway")
    return bool(quantized)


def check_imatrix(path, facts):
    """The imatrix read and held against the model; InputError when it belongs to another model."""
    from gl_plugins.imatrix.coverage import coverage_of
    from gl_plugins.imatrix.formats import read_imatrix

    imx = read_imatrix(path)
    cov = coverage_of(imx, facts)
    foreign = len(cov.extra) + len(cov.mismatched)
    if imx.entries and foreign * 2 > len(imx.entries):
        if cov.mismatched:
            name, (got, want) = next(iter(cov.mismatched.items()))
            detail = f"e.g. {name} holds {got} values where the model needs {want}"
        else:
            detail = f"e.g. {cov.extra[0]}"
        raise InputError(path, f"is an importance matrix of another model: {foreign} of its {len(imx.entries)} "
                               f"entries name tensors {Path(facts.source).name} does not have or of other widths "
                               f"({detail})")
    return imx


class _Search:
    """The state of one search: the model, the imatrix, and every candidate so far."""

    def __init__(self, model: Path, facts, imatrix, imx, gates: Gates, *, chunks: int, threads, requantize: bool,
                 budget_options: dict, echo, guide: bool = False):
        self.model, self.facts, self.imatrix, self.imx = model, facts, imatrix, imx
        self.gates, self.chunks, self.threads, self.requantize = gates, chunks, threads, requantize
        self.budget_options, self.echo = budget_options, echo
        self.candidates: list[Candidate] = []
        self.by_digest: dict[str, Candidate] = {}
        self.spent: list[float] = []  # seconds of each candidate measured in this run
        self.expected = 0  # candidates the search expects to measure still (for the ETA)
        self.guide = guide
        self._errors = None  # --guide: the model's measured tensor errors

    # ------------------------------------------------------------------ candidates

    def prepare(self, kind: str, name: str, plan, target: float | None = None) -> Candidate:
        """A candidate for ``plan``, with the imatrix remedy applied where its coverage has gaps."""
        from gl_plugins.plan.resolve import resolve

        res = resolve(plan, self.facts)
        remedy = None
        if self.imx is not None:
            from gl_plugins.imatrix.coverage import MISMATCH, coverage_of
            from gl_plugins.imatrix.remedy import remedy as pins_for

            cov = coverage_of(self.imx, self.facts, res.assignments)
            uncovered = [n for n, cause in cov.missing.items() if cause != MISMATCH]
            if uncovered:
                rem = pins_for(plan, self.facts, res, uncovered)
                plan, res = rem.after.plan, rem.after
                remedy = rem.summary()
        return Candidate(kind, name, plan, res.bpw, res.bytes, target=target, remedy=remedy)

    def run(self, c: Candidate) -> Candidate:
        """Measure ``c`` (or take what the same plan measured) and judge it by the gates."""
        from gl_plugins.validate.candidates import cached, measure, plan_digest

        digest = plan_digest(c.plan)
        same = self.by_digest.get(digest)
        if same is not None and same.measured:
            c.outcome, c.why, c.cached = same.outcome, list(same.why), True
            self.candidates.append(c)
            self._line(c, 0.0)
            return c
        imatrix = self.imatrix if c.plan.imatrix else None
        hit = cached(self.model, c.plan, imatrix, self.chunks, 512)
        if c.remedy:
            self.echo(f"floor: {c.name}: the imatrix does not cover every tensor it needs; {c.remedy}")
        start = time.monotonic()
        c.outcome = hit or measure(self.model, c.plan, label=f"floor {c.name}", imatrix=imatrix, chunks=self.chunks,
                                   threads=self.threads, allow_requantize=self.requantize)
        took = time.monotonic() - start
        c.cached = hit is not None
        if not c.cached:
            self.spent.append(took)
        c.why = self.gates.judge(c.outcome)
        self.candidates.append(c)
        self.by_digest[digest] = c
        self._line(c, took)
        return c

    def _line(self, c: Candidate, took: float) -> None:
        o, k = c.outcome, c.outcome.kld
        loops = "-" if o.loops is None else f"{o.loops:.2f}"
        verdict = "pass" if c.passed else "fail: " + "; ".join(c.why)
        when = "cached" if c.cached else f"{took:.0f} s"
        eta = ""
        if self.spent and self.expected > 0:
            eta = f"; ETA ~{self.expected * sum(self.spent) / len(self.spent) / 60:.0f} min"
        n = sum(1 for x in self.candidates if x.measured)
        self.echo(f"[{n}] {c.kind:<6} {c.name:<13} {o.bpw:6.3f} bpw {o.bytes / 2**20:8.1f} MiB  "
                  f"KLD {k.get('mean', float('nan')):.4f} p99 {k.get('p99', float('nan')):.3f} "
                  f"top {100 * k.get('same_top_p', float('nan')):.1f} %  loops {loops}  {verdict}  ({when}{eta})")

    # ------------------------------------------------------------------ the guide

    def predict(self, c: Candidate) -> float | None:
        """--guide: ``c``'s mean KLD estimated from the tensor errors ggml measures on the model (measured
        once, cached) and the fitted sensitivities, as the quant-error predictor does; nothing is quantized."""
        from gl_plugins.plan.measured import measure_errors
        from gl_plugins.plan.sensitivity import Sensitivities, estimate_plan

        if self._errors is None:
            self._errors = (measure_errors(self.model, imatrix=self.imatrix, threads=self.threads, facts=self.facts,
                                           echo=lambda m: self.echo(f"floor: guide: {m}")),
                            Sensitivities(self.facts))
        table, weights = self._errors
        c.predicted, _ = estimate_plan(weights, table, self.facts, c.plan)
        return c.predicted

    # ------------------------------------------------------------------ stock

    def ladder(self, low: float, high: float) -> list[Candidate]:
        """The stock candidates in the range, smallest first, one per distinct mixture."""
        from gl_plugins.plan.recipes import stock_mixtures
        from gl_plugins.plan.resolve import stock_plan

        out, seen = [], {}
        for ftype, bpw, types in sorted(stock_mixtures(self.facts, self.imatrix), key=lambda m: m[1]):
            if not low <= bpw <= high:
                continue
            key = tuple(sorted(types.items()))
            if key in seen:
                seen[key].same_as.append(ftype)
                continue
            c = self.prepare("stock", ftype, stock_plan(ftype, imatrix=self.imatrix is not None))
            seen[key] = c
            out.append(c)
        return out

    def stock_floor(self, ladder: list[Candidate], walk: bool) -> Candidate | None:
        if walk:
            for i, c in enumerate(ladder):
                self.expected = len(ladder) - i - 1
                if self.run(c).passed:
                    return c
            return None
        lo, hi = 0, len(ladder)  # the first passing index lies in [lo, hi]; hi == len: none found yet
        probe = (lo + hi) // 2
        if self.guide:  # start where the estimates cross the gate, then check the type on the other side
            pred = [self.predict(c) for c in ladder]
            shown = ", ".join(f"{c.name} {p:.3g}" for c, p in zip(ladder, pred) if p is not None)
            self.echo(f"floor: guide: predicted mean KLD: {shown}")
            probe = next((i for i, p in enumerate(pred) if p is not None and p <= self.gates.max_kld),
                         len(ladder) - 1)
        first = True
        while lo < hi:
            self.expected = max(1, math.ceil(math.log2(hi - lo + 1))) - 1
            if self.run(ladder[probe]).passed:
                hi = probe
            else:
                lo = probe + 1
            if self.guide and first:
                probe = hi - 1 if hi == probe else lo  # passed: the type below; failed: the type above
                first = False
            else:
                probe = (lo + hi) // 2
            probe = min(max(probe, lo), max(hi - 1, lo))
        return ladder[hi] if hi < len(ladder) else None

    # ------------------------------------------------------------------ budget

    def budget_candidate(self, target: float) -> Candidate:
        from gl_plugins.plan.sources import plan_from_recipe

        plan = plan_from_recipe(self.facts, "budget", {**self.budget_options, "target_bpw": target},
                                imatrix=self.imatrix)
        return self.prepare("budget", f"budget@{target:.2f}", plan, target=target)

    def budget(self, target: float) -> Candidate:
        c = self.budget_candidate(target)
        if self.guide:
            self.predict(c)
        return self.run(c)

    def guided_start(self, low: float, high: float, tolerance: float) -> float:
        """--guide: the smallest budget target whose estimated mean KLD is within the gate (bisected on
        the estimates to half the tolerance; nothing is quantized), or ``high``."""
        lo, hi = low, high
        if (self.predict(self.budget_candidate(hi)) or math.inf) > self.gates.max_kld:
            return high
        while hi - lo > tolerance / 2:
            mid = round((lo + hi) / 2, 3)
            if (self.predict(self.budget_candidate(mid)) or math.inf) <= self.gates.max_kld:
                hi = mid
            else:
                lo = mid
        t = round(hi, 2)
        self.echo(f"floor: guide: budget predicted to cross the gate at {t:.2f} bpw")
        return t

    def budget_floor(self, low: float, high: float, start: float, tolerance: float,
                     stock_size: float | None = None) -> Candidate | None:
        """The smallest passing budget target, to within ``tolerance`` bpw (see the module doc)."""
        self.expected = max(1, math.ceil(math.log2(max(start - low, tolerance) / tolerance)))
        best = self.budget(start)
        failing = None  # None: the bottom of the range, not measured
        guessed = self.guide  # best sits at the estimate (or just above it), not at a size chosen to pass
        if not best.passed and self.guide and start + tolerance < high:
            failing, best = best, self.budget(round(start + tolerance, 2))  # the estimate's other side
        # then the stock floor's size (where a budget plan should pass too), then the top of the range
        for fallback in (stock_size, high):
            if not best.passed and fallback is not None and best.target < fallback <= high:
                failing, best, guessed = best, self.budget(round(fallback, 2)), False
        if not best.passed:
            return None
        passing = best
        if failing is not None and failing.target >= passing.target:
            failing = None
        check = guessed  # the last probe was an estimate: check it from the other side next
        last = best if guessed else None
        while passing.target - (failing.target if failing else low) > tolerance + 1e-9:  # targets are rounded
            f = failing.target if failing else low
            p = passing.target
            if check and last is not None:
                t = last.target - tolerance if last.passed else last.target + tolerance
                check = False
            else:
                t, check = self._guess(failing, passing, low)
            t = round(min(max(t, f + tolerance / 2), p - tolerance / 2), 2)
            if t <= f or t >= p:
                break
            self.expected = max(1, math.ceil(math.log2(max(p - f, tolerance) / tolerance))) - 1
            last = self.budget(t)
            if last.passed:
                passing = last
            else:
                failing = last
        return passing

    def _guess(self, failing: Candidate | None, passing: Candidate, low: float) -> tuple[float, bool]:
        """Where the mean KLD should cross the gate, and whether that was interpolated: log-linear
        between the bracket's two ends when both measured a KLD, else along the stock curve scaled to
        the passing point, else halfway (not interpolated)."""
        limit = math.log(self.gates.max_kld)
        p, kp = passing.target, passing.mean_kld
        f = failing.target if failing else low
        kf = failing.mean_kld if failing else None
        if _finite(kp) and _finite(kf) and kp > 0 and kf > kp:
            lp, lf = math.log(kp), math.log(kf)
            if lf > limit >= lp:
                return p - (p - f) * (limit - lp) / (lf - lp), True
        stock = sorted((c.outcome.bpw, c.mean_kld) for c in self.candidates
                       if c.kind == "stock" and c.measured and _finite(c.mean_kld) and c.mean_kld > 0)
        if len(stock) >= 2 and _finite(kp) and kp > 0:
            scale = kp / _curve(stock, passing.outcome.bpw)
            steps = max(2, int((p - f) / 0.01))
            for i in range(steps + 1):
                b = f + (p - f) * i / steps
                if scale * _curve(stock, b) <= self.gates.max_kld:
                    return b, True
        return (f + p) / 2, False


def _curve(points: list[tuple[float, float]], x: float) -> float:
    """Mean KLD at ``x`` bpw on the piecewise log-linear curve through ``points`` (bpw, KLD), sorted;
    extended at the ends by the nearest segment."""
    if x <= points[0][0]:
        a, b = points[0], points[1]
    elif x >= points[-1][0]:
        a, b = points[-2], points[-1]
    else:
        i = next(i for i in range(1, len(points)) if points[i][0] >= x)
        a, b = points[i - 1], points[i]
    if b[0] == a[0]:
        return a[1]
    la, lb = math.log(a[1]), math.log(b[1])
    return math.exp(la + (lb - la) * (x - a[0]) / (b[0] - a[0]))


def find_floor(model, *, imatrix=None, calibrate: bool = False, gates: Gates = Gates(),
               low: float = DEFAULT_RANGE[0], high: float = DEFAULT_RANGE[1], kinds=KINDS, chunks: int = 4,
               tolerance: float = DEFAULT_TOLERANCE, walk: bool = False, allow_requantized: bool = False,
               budget_options: dict | None = None, keep: Path | None = None, force: bool = False,
               threads: int | None = None, guide: bool = False, echo=print) -> Floor:
    """Search the smallest file of ``model`` that passes ``gates`` (see the module docstring).

    ``model`` is a full-precision GGUF or ``pkg:NAME``; ``imatrix`` a file, or ``calibrate`` to
    make one from gl's calibration text. With ``keep`` the smallest passing file is written
    there (with its provenance). With ``guide`` every candidate's mean KLD is estimated first (from
    errors measured on the model's weights, see :meth:`_Search.predict`) and the search measures the
    candidates around the estimated floor first. Raises :class:`NoFloor` (exit 1) when nothing passes, with the
    best candidate measured; GLError (exit 2) on bad input.
    """
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.toolchain.llamacpp import cache_root
    from gl_plugins.toolchain.samples import local_model

    t0 = time.monotonic()
    if not 0 < low < high <= 32:
        raise GLError(f"--range must be LOW-HIGH bits per weight with 0 < LOW < HIGH <= 32, not {low:g}-{high:g}")
    if not 0 < tolerance < high - low:
        raise GLError(f"--tolerance must be above 0 and below the range's width, not {tolerance:g}")
    kinds = tuple(kinds)
    if not kinds or not set(kinds) <= set(KINDS):
        raise GLError(f"--candidates must be a comma-separated subset of {','.join(KINDS)}, not {','.join(kinds)}")
    if imatrix is not None and calibrate:
        raise GLError("give --imatrix FILE or --calibrate, not both")
    model = local_model(model)
    if not model.is_file():
        raise InputError(model, "file not found" if not model.exists() else "is not a file")
    if keep is not None:
        keep = Path(keep)
        if keep.exists() and not force:
            raise InputError(keep, "already exists; pass --force to replace it")
        if not keep.parent.is_dir():
            raise InputError(keep.parent, "folder not found")
    facts = facts_from_gguf(model)
    requantize = check_base(model, facts, allow_requantized)
    imx = None
    if imatrix is not None:
        imatrix = Path(imatrix)
        imx = check_imatrix(imatrix, facts)
    elif calibrate:
        from gl_plugins.imatrix.calibrate import make

        imatrix = make(model, threads=threads, echo=lambda m: echo(f"floor: {m}"))
        imx = check_imatrix(imatrix, facts)
    search = _Search(model, facts, imatrix, imx, gates, chunks=chunks, threads=threads, requantize=requantize,
                     budget_options=budget_options or {}, echo=echo, guide=guide)
    ladder = search.ladder(low, high) if "stock" in kinds else []
    n_weights = sum(t.n_elements for t in facts.tensors)
    largest = max([c.bytes for c in ladder] + [int(high * n_weights / 8)])
    _check_space(cache_root(), largest, "the candidates are written there one at a time")
    if keep is not None and keep.parent.resolve() != cache_root().resolve():
        _check_space(keep.parent, largest, f"--keep writes {keep.name} there")
    echo(f"floor: {model.name}, {low:g}-{high:g} bpw, gates: {gates.describe()}; "
         f"imatrix: {imatrix.name if imatrix else 'none'}; KLD on {chunks} x 512 tokens of the evaluation text")
    stock = None
    if ladder:
        shown = ", ".join(c.name + (f" (= {', '.join(c.same_as)})" if c.same_as else "") for c in ladder)
        echo(f"floor: stock ladder in range ({len(ladder)}): {shown}")
        stock = search.stock_floor(ladder, walk)
    elif "stock" in kinds:
        echo(f"floor: no stock type of this model falls in {low:g}-{high:g} bpw")
    budget = None
    if "budget" in kinds:
        stock_size = stock.outcome.bpw if stock is not None else None
        start = stock_size if stock_size is not None else high  # budget at exactly the stock floor's size
        if guide:
            start = search.guided_start(low, min(start, high), tolerance)
        budget = search.budget_floor(low, high, min(max(start, low + tolerance), high), tolerance, stock_size)
    considered = {id(c) for c in search.candidates}
    search.candidates.extend(c for c in ladder if id(c) not in considered)
    result = Floor(os.fspath(model), os.fspath(imatrix) if imatrix else None, gates, low, high, search.candidates,
                   stock, budget, chunks=chunks)
    smallest = result.smallest
    if smallest is None:
        result.seconds = time.monotonic() - t0
        best = result.best()
        shown = "nothing was measured" if best is None else (
            f"the best measured was {best.kind} {best.name} at {best.outcome.bpw:.3f} bpw ({'; '.join(best.why)})")
        raise NoFloor(f"{model.name}: no candidate in {low:g}-{high:g} bpw passes {gates.describe()}; {shown}",
                      result)
    if keep is not None:
        from gl_plugins.validate.candidates import measure

        measure(model, smallest.plan, label=f"floor {smallest.name}", imatrix=imatrix if smallest.plan.imatrix
                else None, chunks=chunks, keep=keep, threads=threads, allow_requantize=requantize)
        result.kept = os.fspath(keep)
        echo(f"floor: kept {smallest.kind} {smallest.name} as {keep}")
    result.seconds = time.monotonic() - t0
    return result


def _check_space(folder: Path, largest: int, why: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < largest + MARGIN:
        raise InputError(folder, f"has {free / 2**20:,.0f} MiB free and the largest candidate takes "
                                 f"{largest / 2**20:,.0f} MiB ({why}); free {(largest + MARGIN - free) / 2**20:,.0f} "
                                 f"MiB or point GL_CACHE elsewhere")
