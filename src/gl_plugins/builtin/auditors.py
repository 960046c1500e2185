"""Built-in auditors: the imatrix coverage auditor.

An auditor is any object with ``name``, ``description`` and
``audit(imatrix, facts, assignments) -> list[Finding]``; ``assignments`` is the
resolved plan (a list of :class:`gl_plugins.plan.Assignment`) or None when no
quantization was given. Registering is cheap: the work is imported when
``audit`` runs.
"""

from ..hookspecs import hookimpl


class CoverageAuditor:
    name = "coverage"
    description = ("Which tensors the intended quantization needs importance data for, which lack it and "
                   "why (KV-shared layers, NextN blocks, unrouted experts, another model), and bad values.")

    def audit(self, imatrix, facts, assignments):
        from ..coverage import audit

        return audit(imatrix, facts, assignments)[1]


@hookimpl(trylast=True)
def gl_register_auditors(register):
    register(CoverageAuditor())
