"""The hooks a gl plugin can implement.

Registry hooks receive a ``register`` callback; call it once per object the
plugin provides. The first registration of a name wins, and gl's built-ins
run last (``trylast``), so a third-party plugin can replace a built-in by
registering the same name.
"""

import pluggy

hookspec = pluggy.HookspecMarker("gl")
hookimpl = pluggy.HookimplMarker("gl")


@hookspec
def gl_register_predictors(register):
    """Called when predictions are first needed. ``register(predictor)`` each predictor: an
    object with ``name``, ``description`` and ``predict(facts, quant_type) -> Prediction``."""


@hookspec
def gl_register_recipes(register):
    """Called when a plan is first needed. ``register(recipe)`` each tensor-type-file generator:
    an object with ``name``, ``description``, ``options`` (list of ``click.Option``) and
    ``plan(facts, **options) -> TensorPlan``."""


@hookspec
def gl_register_auditors(register):
    """Called by ``gl imatrix audit``. ``register(auditor)`` each imatrix auditor: an object with
    ``name``, ``description`` and ``audit(imatrix, facts, assignments) -> list[Finding]``."""


@hookspec
def gl_register_validators(register):
    """Called by ``gl validate``. ``register(validator)`` each post-quant validator: an object with
    ``name``, ``description`` and ``validate(context) -> list[Finding]``."""


@hookspec
def gl_register_publishers(register):
    """Called by ``gl publish``. ``register(publisher)`` each publisher: an object with ``name``,
    ``description``, ``available(settings) -> str | None`` (None when usable, else why not) and
    ``publish(request) -> PublishResult``."""


@hookspec
def gl_register_commands(cli):
    """Called when the CLI is built, for a command gl does not define itself.
    Add ``click`` commands with ``cli.add_command(...)``."""
