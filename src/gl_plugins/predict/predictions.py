"""Predictions: will a model survive a quant type, according to each predictor, and combined.

A predictor is any object with ``name``, ``description`` and
``predict(facts, quant) -> Prediction`` (registered through the
``gl_register_predictors`` hook). ``quant`` is a llama-quantize file type in
its canonical spelling (``Q2_K``, ``IQ2_M``, ``Q3_K_M`` …).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gl_plugins import host
from gl_plugins.errors import GLError

VERDICTS = ("ok", "risky", "fails", "unknown")
_SEVERITY = {"ok": 0, "risky": 1, "fails": 2}

COMBINE_RULE = ("the most severe verdict any predictor gave wins (fails > risky > ok); unknown verdicts "
                "are left out, and the result is unknown only when no predictor could judge; its "
                "confidence is the highest among the predictors that gave that verdict")


@dataclass
class Prediction:
    predictor: str
    quant: str
    verdict: str  # ok | risky | fails | unknown
    confidence: float  # in [0, 1]: how likely the predictor thinks its verdict is right
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)  # the figures the verdict rests on
    figures: dict = field(default_factory=dict)  # a predictor's headline numbers, always in --json (predicted_kld)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")
        if not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], not {self.confidence!r}")
        self.confidence = round(float(self.confidence), 3)
        self.reasons = [str(r) for r in self.reasons]

    def to_dict(self, with_evidence: bool = False) -> dict:
        d = {"predictor": self.predictor, "quant": self.quant, "verdict": self.verdict,
             "confidence": round(float(self.confidence), 3), "reasons": list(self.reasons), **self.figures}
        if with_evidence:
            d["evidence"] = self.evidence
        return d


def combine(predictions: list[Prediction], quant: str) -> Prediction:
    """One verdict for ``quant`` from several predictors, by :data:`COMBINE_RULE`."""
    judged = [p for p in predictions if p.verdict != "unknown"]
    if not judged:
        return Prediction("combined", quant, "unknown", 0.0,
                          [f"combine rule: {COMBINE_RULE}", "no predictor could judge this model"])
    worst = max(_SEVERITY[p.verdict] for p in judged)
    deciding = [p for p in judged if _SEVERITY[p.verdict] == worst]
    verdict = deciding[0].verdict
    names = ", ".join(p.predictor for p in deciding)
    return Prediction("combined", quant, verdict, max(p.confidence for p in deciding),
                      [f"combine rule: {COMBINE_RULE}", f"{verdict} according to {names}"],
                      {"deciding": [p.predictor for p in deciding],
                       "verdicts": {p.predictor: p.verdict for p in predictions}})


class Combined:
    """The combine rule as a predictor, so it can be scored on evidence like the others."""

    name = "combined"
    description = "All predictors together: " + COMBINE_RULE + "."

    def __init__(self, predictors):
        self.predictors = list(predictors)

    def predict(self, facts, quant: str) -> Prediction:
        return run(self.predictors, facts, [quant])[0][-1]  # a predictor that raises is left out


@dataclass
class PredictorFailure:
    predictor: str
    plugin: str | None
    quant: str
    error: str

    def __str__(self) -> str:
        plugin = f" (plugin {self.plugin})" if self.plugin else ""
        return f"predictor {self.predictor!r}{plugin} failed on {self.quant}: {self.error}"


def run(predictors, facts, quants: list[str]) -> tuple[list[Prediction], list[PredictorFailure]]:
    """Every predictor on every quant type, then one combined prediction per quant.

    ``predictors`` are registry entries (:class:`~gl_plugins.host.Registered`, which carry the
    values of a predictor's options) or plain predictor objects. A predictor that raises (or
    returns something that is not a Prediction) becomes a :class:`PredictorFailure`; the others
    still run, and the combined verdict is made from those that answered.
    """
    out: list[Prediction] = []
    failures: list[PredictorFailure] = []
    entries = [host.as_entry(p) for p in predictors]
    for quant in quants:
        answered = []
        for p in entries:
            try:
                pred = host.call(p, "predict", facts, quant, returns=Prediction)
            except host.PluginFailed as e:
                failures.append(PredictorFailure(p.name, p.plugin, quant, e.problem.error))
                continue
            except GLError as e:  # one predictor's complaint does not stop the others
                failures.append(PredictorFailure(p.name, p.plugin, quant, f"{type(e).__name__}: {e}"))
                continue
            pred.predictor, pred.quant = p.name, quant
            answered.append(pred)
        out.extend(answered)
        out.append(combine(answered, quant))
    return out, failures


# ---------------------------------------------------------------- quant classes

def quant_bits(quant: str) -> float:
    """Bits per weight of the ggml type a llama-quantize file type is built on (Q2_K -> 2.625)."""
    from gl_plugins.ggml_types import FTYPES, TYPES_BY_NAME, get_ftype

    return TYPES_BY_NAME[FTYPES[get_ftype(quant)][1]].bits_per_weight


def is_two_bit_class(quant: str) -> bool:
    """Q2_K, Q2_K_S, IQ2_*, IQ1_*, TQ*, Q2_0, Q1_0: file types built on a type under 3 bits."""
    return quant_bits(quant) < 3.0
