"""shape-fallback: rows that the requested type cannot hold get bigger types.

llama-quantize gives a tensor a bigger type when its row length ``ne[0]`` is
not a multiple of the chosen type's block size (256 for K- and IQ-types):
the shape fallback (Q2_K → Q4_0, Q4_K → Q5_0, IQ2_* → IQ4_NL …). For the
output matrix (or a tied token embedding) with such rows its mixture picks
Q8_0 outright. This predictor replays a plain ``llama-quantize IN OUT QUANT``
on the model's tensors (:func:`gl_plugins.plan.resolve` on the stock plan),
names the tensors whose type the row width changed, and gives the bits per
weight the file will really hold: on the real Gemma 3 270M (hidden size 640)
"Q2_K" is ~6.9 bpw. The verdict is risky when more than
:data:`RISKY_SHARE` of the quantized weights sit in such tensors: the user
would not get the type asked for.
"""

from __future__ import annotations

from gl_plugins.ggml_types import FTYPES, TYPES_BY_NAME, get_ftype
from gl_plugins.hookspecs import hookimpl
from gl_plugins.model import derived_tensors
from gl_plugins.model.tensors import OUTPUT
from gl_plugins.plan import type_choice as qh
from gl_plugins.plan.resolve import resolve, stock_plan
from gl_plugins.predict.predictions import Prediction

RISKY_SHARE = 0.10  # of the quantized weights


def needs_imatrix(quant: str) -> bool:
    """llama-quantize refuses this file type without an imatrix, so the stock run has one."""
    from gl_plugins.ggml_types import NEEDS_IMATRIX

    ftype = get_ftype(quant)
    return FTYPES[ftype][1] in NEEDS_IMATRIX or ftype == "Q2_K_S"


def _bpw(type_name: str) -> float:
    return TYPES_BY_NAME[type_name].bits_per_weight


def shape_driven(res, facts, quant: str) -> list[tuple[object, str]]:
    """(assignment, the type it would have had if its rows divided) for every tensor the row width changed."""
    default = FTYPES[get_ftype(quant)][1]
    block = TYPES_BY_NAME[default].block_size
    names = [a.name for a in res.assignments]
    mix = qh.Mixture(qh.model_params(facts, names), get_ftype(quant), False, None)
    out = []
    for a in res.assignments:
        if a.fell_back:
            out.append((a, a.requested))
            continue
        cat = qh.category(a.name)
        output_like = cat == qh.OUTPUT or (cat == qh.TOKEN_EMBD and OUTPUT not in names
                                           and a.name == "token_embd.weight")
        if output_like and a.reason.startswith("llama.cpp heuristics") and a.shape[0] % block:
            padded = (-(-a.shape[0] // block) * block,) + tuple(a.shape[1:])
            intended = mix.choose(default, a.name, padded, cat)
            if intended != a.type:
                out.append((a, intended))
    return out


def _group(changed) -> list[str]:
    """'72 × Q2_K→Q4_0 (rows 640 wide: blk.0.attn_q.weight, …)' per (intended, final) pair."""
    groups: dict[tuple[str, str], list] = {}
    for a, intended in changed:
        groups.setdefault((intended, a.type), []).append(a)
    out = []
    for (want, got), items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        widths = ", ".join(str(w) for w in sorted({a.shape[0] for a in items}))
        names = ", ".join(a.name for a in items[:2]) + (", …" if len(items) > 2 else "")
        out.append(f"{len(items)} × {want}→{got} (rows {widths} wide: {names})")
    return out


class ShapeFallback:
    name = "shape-fallback"
    description = ("Tensors whose row width is not a multiple of the type's block size get bigger types; "
                   "reports which, and the bits per weight the quant type will really give.")

    def predict(self, facts, quant: str) -> Prediction:
        full, derived = derived_tensors.with_tensors(facts)
        if full is None:
            missing = " and ".join(derived_tensors.missing_widths(facts))
            return Prediction(self.name, quant, "unknown", 0.0,
                              [f"no tensor list, and the facts lack the {missing} to derive one"])
        res = resolve(stock_plan(quant, imatrix=needs_imatrix(quant)), full)
        changed = shape_driven(res, full, quant)
        quantized = [a for a in res.assignments if a.reason != "not quantizable"]
        n_quantized = sum(a.n_elements for a in quantized) or 1
        share = sum(a.n_elements for a, _ in changed) / n_quantized
        intended_bits = (sum(a.bytes * 8 for a in res.assignments)
                         - sum(a.bytes * 8 - _bpw(t) * a.n_elements for a, t in changed))
        intended_bpw = intended_bits / res.n_params if res.n_params else 0.0
        where = ("tensor shapes derived from the config's widths (no tensor list), so the figures are "
                 "estimates" if derived else "the model's real tensor shapes")
        size = (f"a plain `llama-quantize … {quant}` gives {res.bpw:.2f} bits per weight "
                f"({res.bytes / 2**20:,.0f} MiB for {res.n_params / 1e6:,.0f} M weights)")
        evidence = {"bpw": round(res.bpw, 4), "bpw_if_rows_divided": round(intended_bpw, 4),
                    "bytes": res.bytes, "n_params": res.n_params, "tensors": len(res.assignments),
                    "fallbacks": len(res.fallbacks()), "share_of_quantized_weights": round(share, 4),
                    "derived_shapes": derived,
                    "changed": [{"name": a.name, "row": a.shape[0], "intended": t, "type": a.type}
                                for a, t in changed]}
        if not changed:
            return Prediction(self.name, quant, "ok", 0.5,
                              [f"every quantized tensor's rows divide its type's block size; {size}",
                               f"replayed on {where}; this says nothing about output quality"], evidence)
        n_fb = len(res.fallbacks())
        reasons = [f"{len(changed)} of {len(res.assignments)} tensors get a bigger type because of their row "
                   f"width ({n_fb} by llama-quantize's shape fallback): " + "; ".join(_group(changed)),
                   f"{size}; if every row divided, the same mixture would hold about {intended_bpw:.2f}",
                   f"those tensors hold {share:.0%} of the quantized weights; replayed on {where}"]
        verdict = "risky" if share > RISKY_SHARE else "ok"
        if verdict == "risky":
            reasons.append(f"the file will not be the {quant} asked for (more than {RISKY_SHARE:.0%} of the "
                           f"weights change type); choose types whose blocks divide the rows, or plan for "
                           f"{res.bpw:.2f} bpw")
        return Prediction(self.name, quant, verdict, 0.7 if derived else 0.9, reasons, evidence)


@hookimpl(trylast=True)
def gl_register_predictors(register):
    register(ShapeFallback())
