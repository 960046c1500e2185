"""kld: how far the file's next-token distributions moved from the base model's (KL divergence).

The way the field ranks quantizations: ``llama-perplexity --kl-divergence``
against the base's logits on the evaluation text (``chunks`` chunks of
``ctx`` tokens; the base's logits are made once and cached, see
:func:`gl_plugins.toolchain.llama_eval.base_logits`). It reports mean,
median, p99, p99.9 and maximum KLD, how often the top token stays the same,
RMS Δp and the perplexity ratio, each with the ± llama.cpp prints.

The gates: mean KLD above ``max_mean``, p99 above ``max_p99`` or same-top-p
below ``min_same_top_p`` are errors; mean KLD above ``warn_mean`` is a
warning. The defaults come from measurements on gl's two real sample models
(docs/validate.md): every stock type from Q2_K up passes them (the worst,
Gemma 3 270M's Q2_K, measures mean 0.56, p99 2.41, same-top-p 64%), and a
collapsed file fails every one (Gemma 3 270M in Q1_0: mean 14.4, p99 23.3,
same-top-p 0%). Without a base the validator is skipped.
"""

from __future__ import annotations

import math
import os

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl


def describe(k) -> str:
    """One line of the figures, with llama.cpp's ± where it prints one."""
    def pm(v, e, scale=1.0, fmt=".4f"):
        return f"{v * scale:{fmt}}" + (f" ± {e * scale:{fmt}}" if e is not None else "")

    return (f"mean KLD {pm(k.mean, k.mean_pm)}, median {k.median:.4f}, p99 {k.p99:.4f}, p99.9 {k.p999:.4f}, "
            f"max {k.max:.4f}; same top token {pm(k.same_top_p, k.same_top_p_pm, 100, '.1f')} %, "
            f"RMS Δp {pm(k.rms_dp, k.rms_dp_pm, 100, '.2f')} %, PPL ratio {pm(k.ppl_ratio, k.ppl_ratio_pm)} "
            f"({k.chunks} x {k.ctx} tokens of the evaluation text)")


class KLD:
    name = "kld"
    description = ("KL divergence against the base on the evaluation text (mean, p99, same top token), "
                   "with thresholds.")
    defaults = {"ctx": 512, "chunks": 4, "max_mean": 1.0, "warn_mean": 0.25, "max_p99": 6.0,
                "min_same_top_p": 0.5, "timeout": 3600.0}

    def validate(self, ctx) -> list[Finding]:
        from gl_plugins.toolchain.llama_eval import ModelRunError, kl_divergence

        ctx.require_header()
        base = ctx.require_base("KL divergence is measured against the base's logits")
        s = ctx.settings(self)
        file = os.fspath(ctx.path)
        try:
            k = kl_divergence(ctx.path, base, ctx=int(s["ctx"]), chunks=int(s["chunks"]),
                              timeout=float(s["timeout"]))
        except ModelRunError as e:
            return [Finding("error", "kld-failed", f"llama-perplexity could not measure the KL divergence: {e}",
                            file=file)]
        ctx.figures["kld"] = k.figures()
        text = describe(k)
        if not math.isfinite(k.mean):
            return [Finding("error", "kld-not-finite", f"the KL divergence is {k.mean} ({text})", file=file,
                            hint="the model produces NaN/Inf logits; see the structure findings")]
        broken = []
        if k.mean > float(s["max_mean"]):
            broken.append(f"mean KLD {k.mean:.4f} is above {float(s['max_mean']):g}")
        if k.p99 > float(s["max_p99"]):
            broken.append(f"p99 KLD {k.p99:.4f} is above {float(s['max_p99']):g}")
        if k.same_top_p < float(s["min_same_top_p"]):
            broken.append(f"the top token stays the same {k.same_top_p:.1%} of the time, under "
                          f"{float(s['min_same_top_p']):.0%}")
        if broken:
            return [Finding("error", "kld-limit", "; ".join(broken), file=file, evidence=text,
                            hint="give the output, the embeddings and the attention/FFN down projections more bits, "
                                 "or use an imatrix (gl imatrix make)")]
        if k.mean > float(s["warn_mean"]):
            return [Finding("warning", "kld-high", f"mean KLD {k.mean:.4f} is above {float(s['warn_mean']):g}: "
                                                   f"the file is noticeably worse than its base", file=file,
                            evidence=text)]
        return [Finding("info", "kld-ok", text, file=file)]


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(KLD())
