"""generation: greedy decoding on fixed prompts does not collapse.

Each prompt is continued greedily by ``llama-completion`` (``--temp 0``, a
token limit, two threads) and the text is judged by
:func:`gl_plugins.collapse.diagnose`: empty output, mostly non-words, or a
unit repeating to the token limit. The prompts are plain English openings on
which the base Gemma 3 270M writes ordinary prose.

Greedy decoding makes small healthy models repeat themselves too, so the
verdict distinguishes:

- *degenerate* output (empty, non-words, or an n-gram loop whose unit is at
  most ``ngram_chars`` characters, like "the village, the village, …"): an
  error on any prompt;
- a *sentence loop* (a longer unit): a warning, and an error only when it
  happens on more than ``max_loop_share`` of the prompts.

With a base model the same prompts run on the base first (remembered per
base file); a prompt on which the base collapses too is not held against
the quantized file.
"""

from __future__ import annotations

import os

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl

PROMPTS = (
    "The history of the printing press begins",
    "Water boils at a lower temperature at high altitude because",
    "Once upon a time, in a small village by the sea,",
    "My favourite season is autumn because",
    "To learn a new language, you should",
    "The museum opened its new exhibition about",
)


def _evidence(prompt: str, text: str, collapse=None, base_text: str | None = None) -> str:
    from gl_plugins.validate.collapse import excerpt

    shown = collapse.excerpt if collapse else excerpt(text)
    out = f"prompt: {prompt}\noutput: {shown}"
    if base_text is not None:
        out += f"\nbase:   {excerpt(base_text, limit=160)}"
    return out


class Generation:
    name = "generation"
    description = ("Greedy decoding on fixed prompts: no loop to the token limit, no empty output, no "
                   "non-words; compared with the base model when one is given.")
    defaults = {"n_predict": 80, "ctx": 256, "min_repeats": 3.0, "min_coverage": 0.3, "min_word_share": 0.85,
                "ngram_chars": 20, "max_loop_share": 0.75, "timeout": 180.0}

    def validate(self, ctx) -> list[Finding]:
        from gl_plugins.validate.collapse import diagnose
        from gl_plugins.toolchain.llama_eval import Completion, ModelRunError, complete, remembered
        from gl_plugins.toolchain.llamacpp import default_threads

        ctx.require_header()
        s = ctx.settings(self)
        file = os.fspath(ctx.path)
        gen = dict(n_predict=int(s["n_predict"]), ctx=int(s["ctx"]), timeout=float(s["timeout"]))
        judge = dict(min_repeats=float(s["min_repeats"]), min_coverage=float(s["min_coverage"]),
                     min_word_share=float(s["min_word_share"]))

        def base_run(prompt):
            from gl_plugins.errors import InputError

            params = {"prompt": prompt, "n_predict": gen["n_predict"], "ctx": gen["ctx"],
                      "threads": default_threads()}
            try:
                d = remembered("generation", ctx.base, params, lambda: complete(ctx.base, prompt, **gen).to_dict())
            except ModelRunError as e:
                raise InputError(ctx.base, f"the base model cannot generate, so nothing can be compared with "
                                           f"it: {e}") from None
            return Completion(**d)

        out: list[Finding] = []
        degenerate, loops, excused, considered = [], [], 0, 0
        for prompt in PROMPTS:
            try:
                c = complete(ctx.path, prompt, **gen)
            except ModelRunError as e:
                return [Finding("error", "generation-failed", f"llama.cpp stopped while generating: {e}",
                                file=file, evidence=f"prompt: {prompt}")]
            found = diagnose(c.text, hit_limit=c.hit_limit, **judge)
            base_text = None
            if found and ctx.base is not None:
                b = base_run(prompt)
                base_text = b.text
                if diagnose(b.text, hit_limit=b.hit_limit, **judge):
                    excused += 1
                    out.append(Finding("info", "generation-base-collapses",
                                       f"{found.kind} on this prompt, but the base model collapses here too: "
                                       f"{found.detail}", file=file, evidence=_evidence(prompt, c.text, found,
                                                                                         base_text)))
                    continue
            considered += 1
            if not found:
                continue
            short = found.kind == "loop" and found.figures["period_chars"] <= int(s["ngram_chars"])
            if found.kind != "loop" or short:
                degenerate.append((prompt, c, found, base_text))
            else:
                loops.append((prompt, c, found, base_text))

        loop_error = considered and len(loops) / considered > float(s["max_loop_share"])
        for prompt, c, found, base_text in degenerate:
            kind = "n-gram loop" if found.kind == "loop" else found.kind
            out.append(Finding("error", "generation-collapse", f"{kind}: {found.detail}", file=file,
                               evidence=_evidence(prompt, c.text, found, base_text),
                               hint="the quantization destroyed the model; give the embeddings, the output and "
                                    "the most sensitive tensors more bits (gl plan --recipe protect)"))
        for prompt, c, found, base_text in loops:
            out.append(Finding("error" if loop_error else "warning", "generation-loop",
                               f"sentence loop: {found.detail}", file=file,
                               evidence=_evidence(prompt, c.text, found, base_text),
                               hint="greedy decoding makes small models repeat; it is an error when most "
                                    f"prompts loop (more than {float(s['max_loop_share']):.0%})"))
        n_bad = len(degenerate) + len(loops)
        ctx.figures["collapsed_prompts"] = n_bad
        ctx.figures["prompts"] = len(PROMPTS)
        # the share of the prompts judged (those the base does not collapse on too) that collapsed
        ctx.figures["loop_share"] = round(n_bad / considered, 4) if considered else None
        base_note = f"; {excused} excused because the base collapses there too" if excused else ""
        if not n_bad:
            out.append(Finding("info", "generation-ok", f"no collapse on {considered} prompts{base_note}",
                               file=file))
        else:
            out.append(Finding("info", "generation-summary",
                               f"{len(degenerate)} degenerate and {len(loops)} looping of {considered} prompts"
                               f"{base_note}", file=file))
        return out


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(Generation())
