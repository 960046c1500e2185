"""plan-match: every tensor has the type the plan gives it.

The plan comes from ``--plan`` (a tensor-type map, a plan JSON, or a
provenance file) or from the provenance ``gl quantize`` wrote beside the
file. The expected type is the resolved one (after llama.cpp's shape
fallback), so a tensor the fallback widened is not reported, but a map that
matched the wrong tensors, a rule llama.cpp ignored, or a file made with
another map is.
"""

from __future__ import annotations

import os

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl


class PlanMatch:
    name = "plan-match"
    description = "Every tensor's type equals the plan (from --plan or the provenance gl quantize wrote)."
    defaults = {"max_listed": 12}

    def validate(self, ctx) -> list[Finding]:
        from gl_plugins.validate.run import Skip

        h = ctx.require_header()
        exp = ctx.expectation
        if exp is None:
            raise Skip("no plan to compare with; give --plan MAP, or keep the .gl.json that gl quantize writes")
        limit = ctx.settings(self)["max_listed"]
        file = os.fspath(ctx.path)
        actual = {t.name: t.type_name for t in h.tensors}
        wrong = [(n, actual[n], t) for n, t in exp.types.items() if n in actual and actual[n] != t]
        absent = sorted(n for n in exp.types if n not in actual)
        out: list[Finding] = []
        for name, got, want in wrong[:limit]:
            why = exp.reasons.get(name, "")
            out.append(Finding("error", "plan-mismatch", f"is {got}, the plan gives {want}"
                               + (f" ({why})" if why else ""), tensor=name, file=file,
                               hint=f"the file was not made with {exp.source}; quantize again with it, "
                                    f"or validate against the plan that made it"))
        if len(wrong) > limit:
            out.append(Finding("error", "plan-mismatch", f"and {len(wrong) - limit} more tensors differ from "
                                                         f"the plan", file=file))
        if absent:
            out.append(Finding("error", "plan-tensor-missing", f"{len(absent)} planned tensors are not in the "
                               f"file: {', '.join(absent[:limit])}", file=file))
        ctx.figures["plan_mismatches"] = len(wrong) + len(absent)
        if out:
            out.append(Finding("info", "plan-match-summary",
                               f"{len(wrong)} of {len(exp.types)} planned tensors have another type "
                               f"(plan: {exp.source})", file=file))
            return out
        if not exp.types:
            return [Finding("warning", "plan-match-empty", f"{exp.source} decides no tensor of this file "
                                                           f"(no rule matches any tensor name)", file=file)]
        scope = "tensors its rules name" if exp.only_rules else "tensors"
        return [Finding("info", "plan-match-ok", f"all {len(exp.types)} {scope} have the planned type "
                                                 f"(plan: {exp.source})", file=file)]


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(PlanMatch())
