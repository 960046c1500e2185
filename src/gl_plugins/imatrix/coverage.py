"""Imatrix coverage: which tensors the intended quantization needs data for, which have it, why not.

The required set comes from the resolved plan: tensors whose final type
llama-quantize refuses to make without importance data (IQ1_*, IQ2_*,
IQ3_XXS; Q2_K in a Q2_K_S file). Without a plan it is every weight
llama-quantize may quantize, and gaps are only warnings.

A tensor is covered when the imatrix has an entry of the size llama-quantize
checks (``ne0 × n_expert``) with data for at least one matrix. Every gap gets a
cause, from what llama-imatrix collects: only matrix multiplications on
``blk.*`` weights that the forward pass performs, so the K/V projections of
KV-shared layers, NextN/MTP blocks and experts never routed to stay empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gl_plugins.findings import Finding
from gl_plugins.ggml_types import IMATRIX_EXEMPT
from gl_plugins.hookspecs import hookimpl
from gl_plugins.model.tensors import EMBEDDINGS, block_of, layer_ranges, quantizable

if TYPE_CHECKING:
    from gl_plugins.imatrix.formats import IMatrix

SOURCE = "coverage"

# ggml_quantize_requires_imatrix: ggml aborts (GGML_ASSERT(imatrix != NULL)) when asked to make these
# without data, even for the tensors llama-quantize's own check exempts (token_embd, output).
ABORT_TYPES = ("IQ2_XXS", "IQ2_XS", "IQ1_S")

# causes, in the order they are tried
MISMATCH, UNROUTED, NEVER_RAN, OUTSIDE_BLK, KV_SHARED, NEXTN, OTHER_MODEL, ABSENT = (
    "shape-mismatch", "unrouted", "never-ran", "outside-blk", "kv-shared", "nextn", "other-model", "absent")


@dataclass
class Coverage:
    required: list[str]  # in model order
    covered: list[str]
    missing: dict[str, str]  # name -> cause
    partial: dict[str, list[int]] = field(default_factory=dict)  # covered, but these experts have no data
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (imatrix size, expected)
    extra: list[str] = field(default_factory=list)  # entries naming no tensor of the model
    with_plan: bool = True

    @property
    def percent(self) -> float:
        return 100.0 * len(self.covered) / len(self.required) if self.required else 100.0

    def to_dict(self) -> dict:
        return {"covered": len(self.covered), "required": len(self.required),
                "percent": round(self.percent, 1), "partial": len(self.partial)}


def expected_size(shape) -> int:
    """The imatrix size llama-quantize demands for a weight: ``ne[0] * ne[2]``."""
    return int(shape[0]) * (int(shape[2]) if len(shape) > 2 else 1)


def _looked_up_without_plan(facts) -> list[str]:
    """Weights llama-quantize may quantize and look up in an imatrix (no plan given)."""
    return [t.name for t in quantizable(facts) if t.name not in IMATRIX_EXEMPT]


def looked_up(facts, assignments) -> list[str]:
    """Tensors llama-quantize converts, and so looks up in the imatrix (size checked)."""
    if assignments is None:
        return _looked_up_without_plan(facts)
    return [a.name for a in assignments if a.reason != "not quantizable" and a.type != a.source_type]


def needs_data(a) -> bool:
    """Whether llama-quantize needs imatrix data for this assignment: it refuses the type without
    it, or (for the exempt embedding/output tensors) ggml aborts on it."""
    if a.needs_imatrix:
        return True
    return a.type in ABORT_TYPES and a.reason != "not quantizable" and a.type != a.source_type


def aborts(a) -> bool:
    """Exempt from llama-quantize's check, but ggml aborts making this type without data."""
    return needs_data(a) and a.name in IMATRIX_EXEMPT


_last: tuple = ()  # (imatrix, facts, assignments, coverage) of the latest call


def coverage_of(imx: IMatrix, facts, assignments=None) -> Coverage:
    """Covered, missing (with cause), partial and mismatched tensors. Reads no values.

    The latest result is kept for the same three objects, so an audit that shows the coverage
    and runs the coverage auditor on the same inputs computes it once.
    """
    global _last
    if _last and _last[0] is imx and _last[1] is facts and _last[2] is assignments:
        return _last[3]
    cov = _coverage(imx, facts, assignments)
    _last = (imx, facts, assignments, cov)
    return cov


def _coverage(imx: IMatrix, facts, assignments) -> Coverage:
    import numpy as np

    shapes = {t.name: t.shape for t in facts.tensors}
    if assignments is None:
        required = _looked_up_without_plan(facts)
    else:
        required = [a.name for a in assignments if needs_data(a)]
    extra = [n for n in imx.entries if n not in shapes]
    other_model = _other_model(imx, extra)
    mismatched = {}
    for name in looked_up(facts, assignments):
        if name in EMBEDDINGS:  # llama-quantize only logs a size mismatch for the token embeddings
            continue
        e = imx.entries.get(name)
        if e is not None and e.size != expected_size(shapes[name]):
            mismatched[name] = (e.size, expected_size(shapes[name]))
    covered, missing, partial = [], {}, {}
    for name in required:
        e = imx.entries.get(name)
        if e is not None and name in mismatched:
            missing[name] = MISMATCH
        elif e is not None and e.size != expected_size(shapes[name]):
            missing[name] = MISMATCH
            mismatched[name] = (e.size, expected_size(shapes[name]))
        elif e is not None and imx.format == "gguf" and not (e.counts > 0).any():
            missing[name] = UNROUTED if _is_expert(name, shapes[name]) else NEVER_RAN
        elif e is not None:
            covered.append(name)
            if imx.format == "gguf" and (e.counts == 0).any():
                partial[name] = [int(i) for i in np.flatnonzero(e.counts == 0)]
        else:
            missing[name] = _absent_cause(name, facts, other_model)
    return Coverage(required, covered, missing, partial, mismatched, extra, assignments is not None)


def _is_expert(name: str, shape) -> bool:
    return "_exps" in name or (len(shape) > 2 and shape[2] > 1)


def _other_model(imx: IMatrix, extra: list[str]) -> bool:
    """Most entries name tensors the model lacks: the imatrix was made for another model."""
    return len(extra) * 2 > len(imx.entries)


def _absent_cause(name: str, facts, other_model: bool) -> str:
    lr = block_of(name)
    if lr is None:
        return OUTSIDE_BLK
    layer, role = lr
    if layer in set(facts.kv_shared_layers) and role in ("attn_k.weight", "attn_v.weight"):
        return KV_SHARED
    if ".nextn." in name or (facts.nextn_layers and facts.n_layer and layer >= facts.n_layer - facts.nextn_layers):
        return NEXTN
    return OTHER_MODEL if other_model else ABSENT


# ------------------------------------------------------------------ ranges

def range_groups(names) -> list[tuple[str, list[str]]]:
    """``(label, members)`` per role: ``("blk.15–34.attn_k.weight", [...])``; other names alone.

    Roles keep the order of their first appearance in ``names``.
    """
    groups: dict[str, list[tuple[int, str]]] = {}
    order: list[tuple[str, str | None]] = []
    for n in names:
        lr = block_of(n)
        if lr is None:
            order.append((n, None))
            continue
        layer, role = lr
        if role not in groups:
            groups[role] = []
            order.append((role, role))
        groups[role].append((layer, n))
    out = []
    for n, role in order:
        if role is None:
            out.append((n, [n]))
        else:
            members = sorted(groups[role])
            out.append((f"blk.{layer_ranges([l for l, _ in members], sep=',')}.{role}", [m for _, m in members]))
    return out


def ranges(names) -> list[str]:
    """Names grouped per role into layer ranges: ``blk.15–34.attn_k.weight``; others as they are."""
    return [label for label, _ in range_groups(names)]


# ------------------------------------------------------------------ findings

_CAUSE_TEXT = {
    KV_SHARED: ("imatrix-missing-kv-shared",
                "layers {layers} reuse the K/V cache of an earlier layer, so the forward pass never multiplies "
                "these weights and llama-imatrix cannot score them"),
    NEXTN: ("imatrix-missing-nextn",
            "these belong to the NextN/multi-token-prediction block{s} ({layers}), which ordinary inference "
            "never runs, so llama-imatrix sees no activations for them"),
    OUTSIDE_BLK: ("imatrix-missing-outside-blk",
                  "llama-imatrix only collects weights named blk.* (and output.weight with --process-output), "
                  "so tensors outside the blocks never get data"),
    UNROUTED: ("imatrix-missing-unrouted",
               "the file holds the entry, but its counts are all 0: the router never sent a calibration token "
               "to any of its experts{tokens}"),
    NEVER_RAN: ("imatrix-missing-never-ran",
                "the file holds the entry, but its count is 0: the calibration run never multiplied this "
                "weight with a batch of 16 or more tokens"),
    MISMATCH: ("imatrix-shape-mismatch",
               "the imatrix entry holds {got} values where this model needs {want} (row length × experts): "
               "it was made for a different model"),
    OTHER_MODEL: ("imatrix-missing-other-model",
                  "the imatrix names tensors this model does not have; it was made for a different model"),
    ABSENT: ("imatrix-missing-absent",
             "the file has no entry for a weight the forward pass multiplies; llama-imatrix would have scored "
             "it, so the file was filtered, merged from another run, or made with different layers"),
}


def _layers_text(names) -> str:
    layers = [lr[0] for lr in map(block_of, names) if lr]
    return layer_ranges(layers, sep=",") if layers else "-"


def _tokens_text(imx: IMatrix, facts) -> str:
    if not (imx.chunk_count and imx.chunk_size):
        return ""
    tokens = imx.chunk_count * imx.chunk_size
    text = f"; the run saw {tokens} tokens ({imx.chunk_count} chunks × {imx.chunk_size})"
    if facts.n_expert and facts.n_expert_used:
        per = tokens * facts.n_expert_used / facts.n_expert
        text += f", about {per:.0f} per expert if routing were even ({facts.n_expert_used} of {facts.n_expert})"
    if imx.chunk_count < 100:
        text += "; too few chunks to reach every expert"
    return text


def gap_findings(cov: Coverage, imx: IMatrix, facts, assignments=None) -> list[Finding]:
    """One finding per (cause, role range) of missing tensors, plus partial experts and mismatches."""
    planned = {a.name: a for a in assignments} if assignments is not None else {}
    by_cause: dict[str, list[str]] = {}
    for name, cause in cov.missing.items():
        by_cause.setdefault(cause, []).append(name)
    out: list[Finding] = []
    for cause, names in by_cause.items():
        code, why = _CAUSE_TEXT[cause]
        for rng, members in range_groups(names):
            types = sorted({planned[n].type for n in members if n in planned})
            text = why.format(layers=_layers_text(members), s="s" if len(members) > 1 else "",
                              tokens=_tokens_text(imx, facts),
                              got=cov.mismatched.get(members[0], ("?", "?"))[0],
                              want=cov.mismatched.get(members[0], ("?", "?"))[1])
            count = f" ({len(members)} tensors)" if len(members) > 1 else ""
            if cov.with_plan or cause == MISMATCH:
                sev = "error"
                verdict = (f"; llama-quantize will refuse: {'/'.join(types)} cannot be made without importance data"
                           if cause not in (UNROUTED, NEVER_RAN) else
                           f"; llama-quantize would proceed with flat importance and make garbage {'/'.join(types)}")
                if any(aborts(planned[n]) for n in members if n in planned) and cause not in (UNROUTED, NEVER_RAN):
                    verdict = (f"; llama-quantize exempts this tensor from its imatrix check, then aborts making "
                               f"{'/'.join(types)} without data (GGML_ASSERT(imatrix != NULL))")
                if cause == MISMATCH:
                    verdict = "; llama-quantize stops on the size mismatch"
                hint = ("pin these tensors to a type that needs no imatrix: rerun with --emit-rules FILE, which "
                        "writes the rules for llama-quantize --tensor-type-file and prints the full command"
                        if cause != MISMATCH else
                        "make the imatrix with llama-imatrix on this very model")
            else:
                sev, verdict = "warning", ""
                hint = ("an IQ1/IQ2/IQ3_XXS type on these tensors would be refused; give --quant or --plan "
                        "to check the intended quantization")
            out.append(Finding(sev, code, f"no usable data for {rng}{count}: {text}{verdict}", SOURCE,
                               tensor=rng, file=imx.path, hint=hint))
    others = [n for n in cov.mismatched if n not in cov.missing]
    for rng, members in range_groups(others):
        got, want = cov.mismatched[members[0]]
        out.append(Finding("error", "imatrix-shape-mismatch",
                           f"the imatrix entry for {rng} holds {got} values where this model needs {want} (row "
                           f"length × experts); llama-quantize stops when it reaches it", SOURCE, tensor=rng,
                           file=imx.path, hint="make the imatrix with llama-imatrix on this very model"))
    for rng, members in range_groups(cov.partial):
        total = sum(len(cov.partial[n]) for n in members)
        detail = "; ".join(f"{n}: experts {layer_ranges(cov.partial[n], sep=',')}" for n in members[:8])
        more = f"; … {len(members) - 8} more" if len(members) > 8 else ""
        out.append(Finding(
            "warning", "imatrix-unrouted-experts",
            f"{rng}: {total} expert matri{'ces' if total != 1 else 'x'} in {len(members)} tensor"
            f"{'s' if len(members) != 1 else ''} never received a calibration token{_tokens_text(imx, facts)}; "
            f"llama-quantize gives them flat importance", SOURCE, tensor=rng, file=imx.path,
            evidence=detail + more,
            hint="run llama-imatrix on more and more varied text (more chunks) so every expert is routed to"))
    if cov.extra:
        sev = "error" if _other_model(imx, cov.extra) else "warning"
        out.append(Finding(
            sev, "imatrix-other-model" if sev == "error" else "imatrix-extra-entries",
            f"{len(cov.extra)} of {len(imx.entries)} imatrix entries name tensors this model does not have "
            f"({', '.join(ranges(cov.extra)[:3])}{' …' if len(cov.extra) > 3 else ''})"
            + ("; the imatrix was made for a different model" if sev == "error" else ""),
            SOURCE, file=imx.path,
            hint="make the imatrix with llama-imatrix on the model you quantize" if sev == "error" else
            "harmless for llama-quantize, but check the imatrix belongs to this model"))
    return out


def metadata_findings(imx: IMatrix) -> list[Finding]:
    if imx.format == "gguf" and imx.missing_keys:
        return [Finding("error", "imatrix-no-metadata",
                        f"the GGUF imatrix lacks {', '.join(imx.missing_keys)}; llama-quantize refuses it "
                        f"('missing imatrix metadata')", SOURCE, file=imx.path,
                        hint="convert it with `gl imatrix convert IN OUT.gguf`, which writes the keys")]
    return []


# ------------------------------------------------------------------ values

@dataclass
class BadRows:
    """Rows (matrices/experts) of one entry whose values are unusable; row numbers per kind."""

    name: str
    ne0: int
    nonfinite: list[int] = field(default_factory=list)
    negative: list[int] = field(default_factory=list)
    zero: list[int] = field(default_factory=list)
    flat: list[int] = field(default_factory=list)  # legacy: importance exactly 1, the mark of an unrouted expert
    first_bad: int | None = None  # byte offset of the first non-finite or negative value


def scan_values(imx: IMatrix, facts) -> list[BadRows]:
    """Look at every value once (two reductions per entry, over the memory map)."""
    import numpy as np

    shapes = {t.name: t.shape for t in facts.tensors}
    out = []
    for e in imx.entries.values():
        shape = shapes.get(e.name)
        ne0 = int(shape[0]) if shape is not None and e.size == expected_size(shape) else e.sums.shape[1]
        rows = e.rows(ne0)
        counts = e.row_counts(rows.shape[0])
        used = counts > 0 if imx.format == "gguf" else np.ones(rows.shape[0], dtype=bool)
        with np.errstate(invalid="ignore"):
            mn = rows.min(axis=1)
            mx = rows.max(axis=1)
        nonfinite = used & ~(np.isfinite(mn) & np.isfinite(mx))
        negative = used & (mn < 0) & ~nonfinite
        zero = used & (mn == 0) & (mx == 0)
        bad = BadRows(e.name, ne0, _idx(nonfinite), _idx(negative), _idx(zero))
        if imx.format == "dat" and rows.shape[0] > 1:
            flat = (mn == mx) & (mx == np.float32(max(int(counts[0]), 1)))
            if not flat.all():
                bad.flat = _idx(flat)
        if bad.nonfinite or bad.negative:
            r = min(bad.nonfinite + bad.negative)
            row = rows[r]
            col = int(np.argmax(~np.isfinite(row) | (row < 0)))
            bad.first_bad = e.offset + 4 * (r * ne0 + col)
        if bad.nonfinite or bad.negative or bad.zero or bad.flat:
            out.append(bad)
    return out


def _idx(mask) -> list[int]:
    import numpy as np

    return [int(i) for i in np.flatnonzero(mask)]


def value_findings(bad: list[BadRows], imx: IMatrix, cov: Coverage) -> list[Finding]:
    required = set(cov.required) if cov.with_plan else set()
    out: list[Finding] = []

    def group(kind):
        names = [b.name for b in bad if getattr(b, kind)]
        return names, {b.name: b for b in bad}

    names, by = group("nonfinite")
    for rng, members in range_groups(names):
        first = min(by[n].first_bad for n in members if by[n].first_bad is not None)
        out.append(Finding("error", "imatrix-nonfinite",
                           f"{rng}: NaN or Inf importance in {sum(len(by[n].nonfinite) for n in members)} "
                           f"matrix row(s); llama-quantize stops on the first ('imatrix contains non-finite "
                           f"value')", SOURCE, tensor=rng, file=imx.path, evidence=f"first at byte {first}",
                           hint="recompute the imatrix (an F16 overflow in the model or a corrupt file)"))
    names, by = group("negative")
    for rng, members in range_groups(names):
        first = min(by[n].first_bad for n in members if by[n].first_bad is not None)
        out.append(Finding("error", "imatrix-negative",
                           f"{rng}: negative values in a sum of squares; the file is corrupt and quantizing "
                           f"with it would weight errors by nonsense", SOURCE, tensor=rng, file=imx.path,
                           evidence=f"first at byte {first}", hint="recompute the imatrix"))
    names, by = group("zero")
    for rng, members in range_groups(names):
        needed = [n for n in members if n in required]
        out.append(Finding("error" if needed else "warning", "imatrix-zero-rows",
                           f"{rng}: importance is all zero in {sum(len(by[n].zero) for n in members)} matrix "
                           f"row(s) that have counts; the quantizer would weight every column by 0"
                           + (" and make garbage of the imatrix-only types planned here" if needed else ""),
                           SOURCE, tensor=rng, file=imx.path, hint="recompute the imatrix on real text"))
    names, by = group("flat")
    for rng, members in range_groups(names):
        experts = layer_ranges(sorted({i for n in members for i in by[n].flat}), sep=",")
        out.append(Finding("warning", "imatrix-unrouted-experts",
                           f"{rng}: experts {experts} hold importance exactly 1.0, which llama-imatrix writes "
                           f"to the legacy format for experts that never received a token; llama-quantize "
                           f"gives them flat importance", SOURCE, tensor=rng, file=imx.path,
                           hint="run llama-imatrix on more and more varied text so every expert is routed to"))
    return out


def audit(imx: IMatrix, facts, assignments=None) -> tuple[Coverage, list[Finding]]:
    """Coverage and every finding of the built-in coverage auditor."""
    cov = coverage_of(imx, facts, assignments)
    findings = metadata_findings(imx) + gap_findings(cov, imx, facts, assignments)
    findings += value_findings(scan_values(imx, facts), imx, cov)
    return cov, findings


class CoverageAuditor:
    """The built-in auditor: :func:`audit` as a plugin object."""

    name = "coverage"
    description = ("Which tensors the intended quantization needs importance data for, which lack it and "
                   "why (KV-shared layers, NextN blocks, unrouted experts, another model), and bad values.")

    def audit(self, imatrix, facts, assignments):
        return audit(imatrix, facts, assignments)[1]


@hookimpl(trylast=True)
def gl_register_auditors(register):
    register(CoverageAuditor())
