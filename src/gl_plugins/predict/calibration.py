"""A heuristic predictor's confidence, measured on gl's built-in lab observations.

Confidence is never asserted: it is the share of right calls the predictor
made on the recorded outcomes, for the same kind of verdict and the same
class of quant type, smoothed as (right + 1) / (calls + 2) so that a handful
of observations cannot produce certainty.
"""

from __future__ import annotations

from functools import lru_cache

from gl_plugins.predict.evidence import Score, predicted_outcome, read_evidence, score


@lru_cache(maxsize=1)
def _builtin():
    return tuple(read_evidence("builtin:lab"))  # not the measured frontier the predictors are scored on too


def measure(predictor, same_class) -> Score:
    """Score ``predictor`` on the built-in observations whose quant type satisfies ``same_class``."""
    observations = [o for o in _builtin() if same_class(o.quant)]
    return score([predictor], observations)[predictor.name]


def confidence(measured: Score, verdict: str) -> tuple[float, str]:
    """(confidence, the sentence that justifies it) for a call of ``verdict``."""
    total = measured.judged + measured.abstained + measured.errors
    if not total:
        return 0.5, ("no recorded outcomes for this class of quant type, so no measured accuracy: "
                     "confidence 0.5")
    outcome = predicted_outcome(verdict)
    calls = [d for d in measured.details
             if d["result"] in ("right", "wrong") and predicted_outcome(d["verdict"]) == outcome]
    right = sum(1 for d in calls if d["result"] == "right")
    wrong = [d["model"] for d in measured.details if d["result"] == "wrong"]
    overall = f"right {measured.right} of {total}" + (f" (wrong on {', '.join(wrong)})" if wrong else "")
    conf = (right + 1) / (len(calls) + 2)
    return conf, (f"measured on gl's {total} built-in lab observations: {overall}; its "
                  f"'{outcome}' calls were right {right} of {len(calls)}, so confidence "
                  f"({right}+1)/({len(calls)}+2) = {conf:.2f}")
