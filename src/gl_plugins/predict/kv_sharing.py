"""kv-sharing: KV-shared layers whose attn_k/attn_v never run, so no imatrix can cover them.

In Gemma 3n and Gemma 4 the last layers reuse an earlier layer's KV cache.
Their attn_k/attn_v weights are never multiplied, so llama-imatrix never
records them, and llama-quantize refuses the types that need importance
data (IQ1_*, IQ2_XXS/XS/S, IQ3_XXS, Q2_K under Q2_K_S) for those tensors:
"Missing importance matrix for tensor … in a very low-bit quantization".
The types come from replaying llama-quantize's choice for the quant type
(:func:`gl_plugins.plan.resolve`, stock plan with an imatrix), so tensors
whose row width forces a fallback type are judged by the type they really
get. The remedy is to pin those tensors with a rule and to check the
imatrix with ``gl imatrix audit``.
"""

from __future__ import annotations

from gl_plugins.hookspecs import hookimpl
from gl_plugins.model import derived_tensors
from gl_plugins.model.tensors import layer_of, layer_ranges
from gl_plugins.plan.resolve import resolve, stock_plan
from gl_plugins.predict.predictions import Prediction


def pin_rule(layers: list[int], row_width: int) -> str:
    """A tensor-type rule giving the attn_k/attn_v of ``layers`` a type that needs no imatrix."""
    type_ = "q4_k" if row_width % 256 == 0 else ("q5_0" if row_width % 32 == 0 else "f16")
    return rf"blk\.({'|'.join(str(i) for i in layers)})\.attn_[kv]\.weight={type_}"


class KvSharing:
    name = "kv-sharing"
    description = ("KV-shared layers never run their attn_k/attn_v, so an imatrix cannot cover them and "
                   "imatrix-requiring types fail to quantize unless they are pinned (see gl imatrix audit).")

    def predict(self, facts, quant: str) -> Prediction:
        if not facts.n_layer:
            return Prediction(self.name, quant, "unknown", 0.0,
                              ["the model's facts have no layer count, so KV sharing is unknown"])
        shared = list(facts.kv_shared_layers)
        if not shared:
            return Prediction(self.name, quant, "ok", 0.5,
                              ["no KV-shared layers: every layer runs its own attn_k/attn_v, so an imatrix "
                               "can cover them; this says nothing about output quality"],
                              {"kv_shared_layers": []})
        layers = layer_ranges(shared)
        why = (f"layers {layers} reuse an earlier layer's KV cache, so their attn_k/attn_v never run and "
               f"llama-imatrix never records them")
        full, derived = derived_tensors.with_tensors(facts)
        if full is None:
            missing = " and ".join(derived_tensors.missing_widths(facts))
            return Prediction(self.name, quant, "unknown", 0.0,
                              [why, f"no tensor list, and the facts lack the {missing} to derive one, so the "
                                    f"types {quant} gives them are unknown"], {"kv_shared_layers": shared})
        wanted = {f"blk.{i}.attn_{kv}.weight" for i in shared for kv in "kv"}
        res = resolve(stock_plan(quant, imatrix=True), full)
        kv = [a for a in res.assignments if a.name in wanted]
        evidence = {"kv_shared_layers": shared, "derived_shapes": derived,
                    "tensors": [{"name": a.name, "type": a.type, "needs_imatrix": a.needs_imatrix} for a in kv]}
        if not kv:
            return Prediction(self.name, quant, "ok", 0.5,
                              [why, "but this file holds no attn_k/attn_v for those layers, so there is nothing "
                                    "an imatrix would have to cover"], evidence)
        types = ", ".join(sorted({a.type for a in kv}))
        blocked = [a for a in kv if a.needs_imatrix]
        if not blocked:
            return Prediction(self.name, quant, "ok", 0.5,
                              [why, f"at {quant} their {len(kv)} attn_k/attn_v tensors get {types}, which "
                                    f"llama-quantize makes without importance data; being unused, their "
                                    f"precision does not matter",
                               f"`gl imatrix audit IMATRIX -m {facts.source} -q {quant}` shows the same gap "
                               f"when an imatrix is used"], evidence)
        types = ", ".join(sorted({a.type for a in blocked}))
        rule = pin_rule(sorted({layer_of(a.name) for a in blocked}), blocked[0].shape[0])
        where = "derived from the config's widths" if derived else "in this file"
        return Prediction(self.name, quant, "fails", 0.8 if derived else 0.9, [
            why,
            f"at {quant} their {len(blocked)} attn_k/attn_v tensors ({where}) get {types}, which llama-quantize "
            f"will not make without importance data: it stops with \"Missing importance matrix for tensor "
            f"{blocked[0].name} in a very low-bit quantization\"",
            f"pin them first in the tensor-type file, e.g. {rule}, and check the imatrix with "
            f"`gl imatrix audit IMATRIX -m {facts.source} -q {quant}` (its --emit-rules writes such pins)",
        ], {**evidence, "pin_rule": rule})


@hookimpl(trylast=True)
def gl_register_predictors(register):
    register(KvSharing())
