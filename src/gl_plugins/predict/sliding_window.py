"""sliding-window: sliding-window attention as an amplifier of 2-bit quantization damage.

The lab proposed that sliding-window attention amplifies the risk of 2-bit
types. Its notes named two models as sliding-window that have none in their
configs, so the claim is weak; this predictor reads the per-layer attention
pattern from the facts, never calls a model "fails" on that alone (at most
"risky"), and measures its accuracy like the band rule.
"""

from __future__ import annotations

from types import SimpleNamespace

from gl_plugins.hookspecs import hookimpl
from gl_plugins.model.tensors import layer_ranges
from gl_plugins.predict import calibration
from gl_plugins.predict.predictions import Prediction, is_two_bit_class


class SlidingWindow:
    name = "sliding-window"
    description = "Sliding-window attention layers as a risk amplifier at 2-bit types (per-layer pattern)."

    def __init__(self):
        self._measured: dict = {}

    def predict(self, facts, quant: str) -> Prediction:
        pred = self.judge(facts, quant)
        if pred.verdict == "unknown":
            return pred
        two_bit = is_two_bit_class(quant)
        if two_bit not in self._measured:
            judge = SimpleNamespace(name=self.name, predict=self.judge)
            self._measured[two_bit] = calibration.measure(judge, lambda q: is_two_bit_class(q) == two_bit)
        pred.confidence, why = calibration.confidence(self._measured[two_bit], pred.verdict)
        pred.reasons.append(why)
        pred.evidence["measured"] = self._measured[two_bit].to_dict()
        return pred

    def judge(self, facts, quant: str) -> Prediction:
        """The verdict and reasons, before the confidence is measured."""
        if not facts.n_layer:
            return Prediction(self.name, quant, "unknown", 0.0,
                              ["the model's facts have no layer count, so the attention pattern is unknown"])
        swa = list(facts.sliding_window_layers)
        glob = facts.global_attention_layers
        evidence = {"n_layer": facts.n_layer, "sliding_window": facts.sliding_window,
                    "sliding_window_layers": swa, "global_attention_layers": glob}
        if not swa:
            pattern = f"no sliding-window attention: all {facts.n_layer} layers attend globally"
        else:
            window = f"a {facts.sliding_window}-token" if facts.sliding_window else "a"
            pattern = (f"{len(swa)} of {facts.n_layer} layers attend through {window} sliding window; "
                       f"global attention at layers {layer_ranges(glob)}")
        if not is_two_bit_class(quant):
            return Prediction(self.name, quant, "ok", 0.0,
                              [pattern, f"the amplifier claim concerns 2-bit types only, not {quant}"], evidence)
        if not swa:
            return Prediction(self.name, quant, "ok", 0.0, [pattern, "nothing to amplify 2-bit damage here"],
                              evidence)
        return Prediction(self.name, quant, "risky", 0.0,
                          [pattern, f"at {quant} the lab saw sliding-window models degrade more; an amplifier, "
                                    f"not a failure on its own"], evidence)


@hookimpl(trylast=True)
def gl_register_predictors(register):
    register(SlidingWindow())
