"""A third-party gl predictor: is the hidden size a multiple of 256?

K- and IQ-types store rows in blocks of 256 weights. When the hidden size
is not a multiple of 256, every matrix that reads the hidden state (the
attention projections, FFN gate and up, the embeddings) has rows the type
cannot hold, and llama-quantize gives those tensors a bigger type instead.
"""

from gl_plugins import Prediction, default_type, hookimpl


class Hidden256:
    name = "hidden-256"
    description = "Flags models whose hidden size is not a multiple of 256 (the K- and IQ-type block)."

    def predict(self, facts, quant):
        hidden = facts.hidden_size
        if not hidden:
            return Prediction(self.name, quant, "unknown", 0.0, ["the hidden size is not known"])
        block = default_type(quant).block_size
        evidence = {"hidden_size": hidden, "block_size": block, "remainder": hidden % 256}
        if hidden % 256 == 0:
            return Prediction(self.name, quant, "ok", 0.5,
                              [f"hidden size {hidden} is a multiple of 256"], evidence)
        if hidden % block == 0:
            return Prediction(self.name, quant, "ok", 0.5,
                              [f"hidden size {hidden} is not a multiple of 256, but {quant} is built on "
                               f"{block}-weight blocks, which divide it"], evidence)
        return Prediction(self.name, quant, "risky", 0.9,
                          [f"hidden size {hidden} is not a multiple of 256 ({hidden} = 256 × {hidden // 256} "
                           f"+ {hidden % 256}): tensors reading the hidden state fall back from {quant}'s "
                           f"type to a bigger one"], evidence)


@hookimpl
def gl_register_predictors(register):
    register(Hidden256())
