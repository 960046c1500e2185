"""structure: the file is a whole GGUF, holds the base model's tensors, no NaN/Inf, and an honest label.

Checks, in order:

- the header and tensor directory parse, and every tensor's data lies inside
  the file (a truncated file stops here, with the position);
- with a base model: the same tensor names, and the same shape for each;
- no NaN or Inf in float tensors, nor in the block scales of quantized ones;
- ``general.file_type`` (the label Ollama and the Hub show) agrees with the
  types the block weights really have: the labelled type, or the types
  llama.cpp falls back to from it for narrow rows, must hold at least
  ``min_label_share`` of the quantized block-weight parameters.
"""

from __future__ import annotations

import os

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl

MAX_LISTED = 8


def _family(type_name: str) -> set[str]:
    """A type and what llama.cpp's shape fallback turns it into."""
    from gl_plugins.ggml_types import FALLBACK

    out = {type_name, "F16"}
    t = type_name
    while t in FALLBACK:
        t = FALLBACK[t]
        out.add(t)
    return out


def label_consistency(header) -> tuple[str | None, float | None, str | None, float | None]:
    """(label, share of block weights in the label's family, dominant type, its share)."""
    from gl_plugins.ggml_types import FTYPES, ftype_name

    label = ftype_name(header.get("general.file_type"))
    counts: dict[str, int] = {}
    for t in header.tensors:
        if t.name.startswith("blk.") and len(t.shape) >= 2 and t.type_name not in ("F32",):
            counts[t.type_name] = counts.get(t.type_name, 0) + t.n_elements
    total = sum(counts.values())
    if not total or label is None or label not in FTYPES:
        return label, None, None, None
    family = _family(FTYPES[label][1])
    share = sum(n for ty, n in counts.items() if ty in family) / total
    dominant, n_dom = max(counts.items(), key=lambda kv: kv[1])
    return label, share, dominant, n_dom / total


class Structure:
    name = "structure"
    description = ("The GGUF parses and is complete; same tensor names and shapes as the base; no NaN/Inf "
                   "in float tensors or block scales; general.file_type agrees with the real types.")
    defaults = {"scan_values": True, "min_label_share": 0.33}

    def validate(self, ctx) -> list[Finding]:
        s = ctx.settings(self)
        file = os.fspath(ctx.path)
        h = ctx.header
        if h is None:
            return [Finding("error", "structure-unreadable", ctx.header_error, file=file,
                            hint="the file is truncated or corrupt; quantize it again (gl quantize writes "
                                 "to a temporary file and renames it only when llama-quantize succeeded)")]
        out: list[Finding] = []
        n_params = sum(t.n_elements for t in h.tensors)
        unknown = sorted({t.type_name for t in h.tensors if t.nbytes is None})
        if unknown:
            out.append(Finding("warning", "structure-unknown-type",
                               f"tensor types {', '.join(unknown)} are unknown to gl; their sizes and values "
                               f"are not checked", file=file,
                               hint="run `gl toolchain install` so gl reads the type table of its llama.cpp"))
        out += self._against_base(ctx, h, file)
        scanned = bad_tensors = 0
        if s["scan_values"]:
            from gl_plugins.validate.tensor_scan import scan_file

            results = scan_file(h)
            scanned = len(results)
            bad = [r for r in results if r.bad]
            bad_tensors = len(bad)
            for r in bad[:MAX_LISTED]:
                out.append(Finding("error", "structure-non-finite",
                                   f"{r.bad} of {r.checked} {r.what} are NaN or Inf", tensor=r.name, file=file,
                                   hint="the source model or the imatrix holds non-finite values; check both"))
            if len(bad) > MAX_LISTED:
                out.append(Finding("error", "structure-non-finite",
                                   f"and {len(bad) - MAX_LISTED} more tensors hold NaN or Inf", file=file))
        label, share, dominant, dom_share = label_consistency(h)
        if share is not None and share < s["min_label_share"]:
            out.append(Finding(
                "warning", "structure-file-type-mismatch",
                f"general.file_type says {label}, but only {share:.0%} of the block weights are of that type "
                f"or its row-width fallbacks; the most are {dominant} ({dom_share:.0%})", file=file,
                hint="Ollama and model hubs show this label; choose the base type that matches the plan "
                     "(gl plan picks it from the dominant type)"))
        ctx.figures["n_tensors"] = len(h.tensors)
        ctx.figures["n_params"] = n_params
        if not any(f.severity == "error" for f in out):
            checked = f"; values checked in {scanned} tensors" if s["scan_values"] else ""
            out.append(Finding("info", "structure-ok",
                               f"{len(h.tensors)} tensors, {n_params / 1e6:.1f}M parameters, labelled "
                               f"{label or 'without a file type'}{checked}", file=file))
        ctx.figures["non_finite_tensors"] = bad_tensors
        return out

    def _against_base(self, ctx, h, file) -> list[Finding]:
        if ctx.base is None:
            return []
        bh = ctx.base_header
        mine = {t.name: t.shape for t in h.tensors}
        theirs = {t.name: t.shape for t in bh.tensors}
        out = []
        missing = sorted(set(theirs) - set(mine))
        extra = sorted(set(mine) - set(theirs))
        shaped = sorted(n for n in set(mine) & set(theirs) if tuple(mine[n]) != tuple(theirs[n]))
        if missing:
            out.append(Finding("error", "structure-tensor-missing",
                               f"{len(missing)} tensors of the base are missing: {_names(missing)}", file=file))
        if extra:
            out.append(Finding("error", "structure-tensor-extra",
                               f"{len(extra)} tensors are not in the base: {_names(extra)}", file=file))
        for n in shaped[:MAX_LISTED]:
            out.append(Finding("error", "structure-shape", f"shape {list(mine[n])} differs from the base's "
                                                           f"{list(theirs[n])}", tensor=n, file=file))
        if len(shaped) > MAX_LISTED:
            out.append(Finding("error", "structure-shape",
                               f"and {len(shaped) - MAX_LISTED} more tensors differ in shape", file=file))
        return out


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(Structure())
