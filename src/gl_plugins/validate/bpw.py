"""bpw: the bits per weight the file really holds, against the target and gl's prediction.

Bits per weight are counted as llama-quantize counts them: every tensor's
bytes times eight over every tensor's elements. The validator also reports
which share of the parameters really is at the plan's lowest type: a plan
that asks for Q2_K on a model whose rows are 640 wide gets Q4_0 instead
(llama.cpp's shape fallback), and the file is far larger than intended.

The target is the ``target`` setting, else the plan's ``target_bpw`` (the
``budget`` recipe records it; with ``exclude_embeddings`` the embeddings are
left out of the count, as the recipe did).
"""

from __future__ import annotations

import os

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl
from gl_plugins.model.tensors import EMBEDDINGS



def measured_bpw(tensors, exclude=()) -> tuple[float, int, int]:
    """(bits per weight, bytes, elements) over tensors of known type, leaving out ``exclude``."""
    b = n = 0
    for t in tensors:
        if t.name in exclude or t.nbytes is None:
            continue
        b += t.nbytes
        n += t.n_elements
    return (b * 8 / n if n else 0.0), b, n


def _bits(type_name: str) -> float:
    from gl_plugins.ggml_types import TYPES_BY_NAME

    t = TYPES_BY_NAME.get(type_name)
    return t.bits_per_weight if t else 99.0


class Bpw:
    name = "bpw"
    description = ("Real bits per weight against the target and the prediction; the share of parameters "
                   "really at the plan's lowest type.")
    defaults = {"target": None, "tolerance": 0.1, "predicted_tolerance": 0.02, "min_low_share": 0.5}

    def validate(self, ctx) -> list[Finding]:
        from gl_plugins.ggml_types import TYPES_BY_NAME

        h = ctx.require_header()
        s = ctx.settings(self)
        file = os.fspath(ctx.path)
        bpw, nbytes, n = measured_bpw(h.tensors)
        ctx.figures["bpw"] = round(bpw, 4)
        ctx.figures["bytes"] = nbytes
        exp = ctx.expectation
        params = dict(getattr(exp.plan, "params", None) or {}) if exp else {}
        out: list[Finding] = []

        actual = {t.name: t for t in h.tensors}
        quantized = [t for t in h.tensors if (TYPES_BY_NAME.get(t.type_name) or TYPES_BY_NAME["F32"]).quantized]
        if exp and exp.requested:
            asked = {nm: ty for nm, ty in exp.requested.items() if nm in actual and TYPES_BY_NAME.get(ty)
                     and TYPES_BY_NAME[ty].quantized}
            low = min(asked.values(), key=_bits) if asked else None
        else:
            asked = {}
            low = min((t.type_name for t in quantized), key=_bits) if quantized else None
        low_text = ""
        if low:
            real = sum(t.n_elements for t in h.tensors if t.type_name == low) / n
            ctx.figures["low_type"] = low
            ctx.figures["low_type_share"] = round(real, 4)
            low_text = f"; {real:.0%} of the parameters are at {low}, the lowest type"
            if asked:
                wanted = sum(actual[nm].n_elements for nm, ty in asked.items() if ty == low) / n
                ctx.figures["low_type_planned_share"] = round(wanted, 4)
                low_text += f" (the plan asked for {wanted:.0%})"
                if wanted and real < s["min_low_share"] * wanted:
                    instead: dict[str, int] = {}
                    for nm, ty in asked.items():
                        if ty == low and actual[nm].type_name != low:
                            k = actual[nm].type_name
                            instead[k] = instead.get(k, 0) + actual[nm].n_elements
                    where = ", ".join(f"{k} ({v / n:.0%})" for k, v in sorted(instead.items(), key=lambda kv: -kv[1]))
                    out.append(Finding(
                        "warning", "bpw-low-type-share",
                        f"the plan asked for {low} on {wanted:.0%} of the parameters, but only {real:.0%} are "
                        f"{low}; the rest are {where or 'other types'}", file=file,
                        hint=f"rows whose length is not a multiple of {low}'s block size "
                             f"({TYPES_BY_NAME[low].block_size}) fall back to a larger type; pick a type that "
                             f"fits the rows (gl plan shows the fallbacks)"))
        out.insert(0, Finding("info", "bpw-measured", f"{bpw:.3f} bits per weight ({nbytes / 2**20:.1f} MiB over "
                                                       f"{n / 1e6:.1f}M parameters){low_text}", file=file))

        target = s["target"] if s["target"] is not None else params.get("target_bpw")
        if target is not None:
            exclude = EMBEDDINGS if params.get("exclude_embeddings") and s["target"] is None else ()
            counted, _, _ = measured_bpw(h.tensors, exclude)
            ctx.figures["target_bpw"] = float(target)
            scope = " (embeddings excluded)" if exclude else ""
            if counted > float(target) + s["tolerance"]:
                out.append(Finding("error", "bpw-over-target",
                                   f"the file holds {counted:.3f} bits per weight{scope}, the target was "
                                   f"{float(target):g} (tolerance {s['tolerance']:g})", file=file,
                                   hint="see which tensors fell back to larger types (gl plan MODEL ... shows "
                                        "them) and choose types that fit their rows"))
            else:
                out.append(Finding("info", "bpw-target-met", f"{counted:.3f} bits per weight{scope}, within "
                                                              f"{s['tolerance']:g} of the target "
                                                              f"{float(target):g}", file=file))
        predicted = exp.predicted_bpw if exp else None
        if predicted is not None:
            ctx.figures["predicted_bpw"] = round(float(predicted), 4)
            if abs(bpw - float(predicted)) > s["predicted_tolerance"]:
                out.append(Finding("warning", "bpw-prediction-off",
                                   f"gl predicted {float(predicted):.3f} bits per weight, the file holds "
                                   f"{bpw:.3f}", file=file,
                                   hint="the plan simulator disagrees with this llama.cpp build; "
                                        "`gl plan --verify` shows where"))
        return out


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(Bpw())
