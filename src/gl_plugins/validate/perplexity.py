"""perplexity: how far the file's perplexity moved from the base model's.

Both are measured by ``llama-perplexity`` on the same fixed text (prose from
Python's ``pydoc_data.topics``; ``chunks`` chunks of ``ctx`` tokens, a few
seconds for a 270M model). The base's figure is remembered per base file.
The ratio quantized / base is a warning above ``warn_ratio`` and an error
above ``max_ratio``. Without a base only the perplexity is reported.
"""

from __future__ import annotations

import math
import os

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl


class Perplexity:
    name = "perplexity"
    description = "Perplexity on a fixed text slice against the base model's; the ratio has thresholds."
    defaults = {"ctx": 128, "chunks": 8, "warn_ratio": 1.15, "max_ratio": 1.5, "timeout": 900.0}

    def validate(self, ctx) -> list[Finding]:
        from gl_plugins.toolchain.llama_eval import ModelRunError, Perplexity as Result, perplexity, remembered
        from gl_plugins.toolchain.llamacpp import default_threads

        ctx.require_header()
        s = ctx.settings(self)
        file = os.fspath(ctx.path)
        run = dict(ctx=int(s["ctx"]), chunks=int(s["chunks"]), timeout=float(s["timeout"]))
        try:
            mine = perplexity(ctx.path, **run)
        except ModelRunError as e:
            return [Finding("error", "perplexity-failed", f"llama-perplexity could not measure the file: {e}",
                            file=file)]
        ctx.figures["perplexity"] = _round(mine.value)
        setup = f"{mine.chunks} chunks of {mine.ctx} tokens of pydoc_data.topics"
        if not math.isfinite(mine.value):
            return [Finding("error", "perplexity-not-finite", f"perplexity is {mine.value} ({setup})", file=file,
                            hint="the model produces NaN/Inf logits; see the structure findings")]
        if ctx.base is None:
            return [Finding("info", "perplexity-measured", f"perplexity {mine.value:.3f} ({setup}); no base "
                                                           f"model to compare with (give --base)", file=file)]
        try:
            key = {"ctx": run["ctx"], "chunks": run["chunks"], "threads": default_threads()}
            base = Result(**remembered("perplexity", ctx.base, key,
                                       lambda: perplexity(ctx.base, **run).to_dict()))
        except ModelRunError as e:
            return [Finding("error", "perplexity-base-failed",
                            f"llama-perplexity could not measure the base model {ctx.base}: {e}", file=file)]
        ctx.figures["base_perplexity"] = _round(base.value)
        ratio = mine.value / base.value if base.value else math.inf
        ctx.figures["perplexity_ratio"] = _round(ratio)
        text = (f"perplexity {mine.value:.3f} against the base's {base.value:.3f}: ratio {ratio:.3f} ({setup})")
        evidence = "chunk  quant     base\n" + "\n".join(
            f"{i + 1:>5}  {a:<8.3f}  {b:.3f}" for i, (a, b) in enumerate(zip(mine.per_chunk, base.per_chunk)))
        if ratio > float(s["max_ratio"]):
            return [Finding("error", "perplexity-ratio", f"{text}, above the limit {float(s['max_ratio']):g}",
                            file=file, evidence=evidence,
                            hint="give the most sensitive tensors (embeddings, output, attention) more bits")]
        if ratio > float(s["warn_ratio"]):
            return [Finding("warning", "perplexity-ratio", f"{text}, above {float(s['warn_ratio']):g}",
                            file=file, evidence=evidence)]
        return [Finding("info", "perplexity-ok", text, file=file)]


def _round(x: float):
    return round(x, 4) if math.isfinite(x) else None


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(Perplexity())
