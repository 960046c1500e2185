"""Built-in validators: structure, plan-match, bpw, loads, generation, perplexity.

Each lives in its own module under :mod:`gl_plugins.validators`; importing
them happens inside the hook, so loading plugins stays cheap.
"""

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def gl_register_validators(register):
    from ..validators.bpw import Bpw
    from ..validators.generation import Generation
    from ..validators.loads import Loads
    from ..validators.perplexity import Perplexity
    from ..validators.plan_match import PlanMatch
    from ..validators.structure import Structure

    for validator in (Structure(), PlanMatch(), Bpw(), Loads(), Generation(), Perplexity()):
        register(validator)
