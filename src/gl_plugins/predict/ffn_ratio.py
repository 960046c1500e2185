"""ffn-ratio: the lab's rule that an FFN expansion ratio inside a danger band breaks 2-bit quants.

The ratio is FFN width / hidden size, computed from the model's real widths.
A model whose layers differ (Gemma 4 E2B: the KV-shared layers have a
double-wide MLP) is judged per layer: it is in the band when any of its
layers is, and the output says which layers are where. Inside the band the
lab's minimum is Q3_K; outside it, and for types from Q3_K up, the rule sees
no danger. The rule's accuracy is measured, not assumed (see calibration).
"""

from __future__ import annotations

from types import SimpleNamespace

import click

from gl_plugins.hookspecs import hookimpl
from gl_plugins.model.tensors import layer_ranges
from gl_plugins.predict import calibration
from gl_plugins.predict.predictions import Prediction, quant_bits

DEFAULT_BAND = (3.0, 5.5)


def tier(quant: str) -> str:
    """"2-bit" (under 3 bits), "below Q3_K", or "Q3_K and up"."""
    bits = quant_bits(quant)
    if bits < 3.0:
        return "2-bit"
    return "below Q3_K" if bits < quant_bits("Q3_K") else "Q3_K and up"


def parse_band(text: str) -> tuple[float, float]:
    """'3.0-5.5' -> (3.0, 5.5); ValueError when it is not LOW-HIGH with 0 < LOW < HIGH."""
    low, sep, high = str(text).partition("-")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise ValueError(f"{text!r} is not LOW-HIGH, e.g. 3.0-5.5") from None
    if not sep or not 0 < lo < hi:
        raise ValueError(f"{text!r} is not LOW-HIGH with 0 < LOW < HIGH, e.g. 3.0-5.5")
    return lo, hi


def _where(ratio: float, band: tuple[float, float]) -> str:
    lo, hi = band
    if ratio < lo:
        return "below the band"
    return "above the band" if ratio > hi else "inside the band"


def _band_option(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_band(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


class FfnRatio:
    name = "ffn-ratio"
    description = ("The lab's rule: an FFN expansion ratio inside the danger band (default 3.0–5.5×) "
                   "predicts failure at 2-bit types; Q3_K is the minimum inside it.")

    def __init__(self, band: tuple[float, float] = DEFAULT_BAND):
        self.band = band
        self._measured: dict = {}

    @property
    def options(self):
        return [click.Option(["--band"], callback=_band_option, metavar="LOW-HIGH",
                             help=f"Danger band of the ffn-ratio predictor (default {self.band[0]}-{self.band[1]}).")]

    def predict(self, facts, quant: str, band: tuple[float, float] | None = None) -> Prediction:
        band = tuple(band or self.band)
        pred = self.judge(facts, quant, band)
        if pred.verdict == "unknown":
            return pred
        key = (band, tier(quant))
        if key not in self._measured:
            judge = SimpleNamespace(name=self.name, predict=lambda f, q: self.judge(f, q, band))
            self._measured[key] = calibration.measure(judge, lambda q: tier(q) == tier(quant))
        pred.confidence, why = calibration.confidence(self._measured[key], pred.verdict)
        pred.reasons.append(why)
        pred.evidence["measured"] = self._measured[key].to_dict()
        return pred

    def judge(self, facts, quant: str, band: tuple[float, float] | None = None) -> Prediction:
        """The rule's verdict and reasons, before its confidence is measured."""
        def unknown(reason):
            return Prediction(self.name, quant, "unknown", 0.0, [reason])

        if facts.n_expert:
            return unknown(f"mixture of experts ({facts.n_expert} experts): the lab's rule was drawn "
                           f"from dense models only")
        missing = [what for what, v in (("hidden size", facts.hidden_size), ("FFN width", facts.ffn_sizes))
                   if not v]
        if missing:
            return unknown(f"the model's facts have no {' and no '.join(missing)} (config fields "
                           f"hidden_size / intermediate_size), so the FFN ratio cannot be computed")
        band = tuple(band or self.band)
        lo, hi = band
        hidden = facts.hidden_size
        groups: dict[int, list[int]] = {}
        for layer, width in enumerate(facts.ffn_sizes):
            groups.setdefault(width, []).append(layer)
        in_band = [i for i, w in enumerate(facts.ffn_sizes) if lo <= w / hidden <= hi]
        n = len(facts.ffn_sizes)
        per_layer = len(groups) > 1
        parts = []
        for width, layers in sorted(groups.items(), key=lambda kv: kv[1][0]):
            r = width / hidden
            which = f"all {n} layers" if not per_layer else f"layers {layer_ranges(layers)}"
            parts.append(f"{r:.2f}× ({width}/{hidden}) on {which}, {_where(r, band)}")
        band_text = f"{lo:g}–{hi:g}×"
        if per_layer:
            measured = (f"FFN widths differ between layers, so judged per layer: {'; '.join(parts)} "
                        f"(band {band_text}); {len(in_band)} of {n} layers are inside the band")
        else:
            measured = f"FFN ratio {parts[0]} {band_text}"
        t = tier(quant)
        if not in_band:
            verdict = "ok"
            rule = "outside the band the rule sees no danger at any type"
        elif t == "2-bit":
            verdict = "fails"
            rule = f"inside the band the rule predicts {quant} ({quant_bits(quant):.2f}-bit type) fails; Q3_K is its minimum"
        elif t == "below Q3_K":
            verdict = "risky"
            rule = f"inside the band the rule's minimum is Q3_K, and {quant} is built on a smaller type"
        else:
            verdict = "ok"
            rule = f"inside the band the rule's minimum is Q3_K, and {quant} is at or above it"
        evidence = {
            "band": [lo, hi], "hidden_size": hidden, "quant_tier": t, "per_layer": per_layer,
            "layers_in_band": in_band,
            "ratios": [{"ffn": w, "ratio": round(w / hidden, 4), "layers": ls, "where": _where(w / hidden, band)}
                       for w, ls in sorted(groups.items(), key=lambda kv: kv[1][0])],
        }
        return Prediction(self.name, quant, verdict, 0.0, [measured, rule], evidence)


@hookimpl(trylast=True)
def gl_register_predictors(register):
    register(FfnRatio())
