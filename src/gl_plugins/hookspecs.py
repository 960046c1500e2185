"""The hooks a gl plugin can implement.

Registry hooks receive a ``register`` callback; call it once per object the
plugin provides. What an object must have is a protocol in ``gl_plugins``
(``Predictor``, ``Recipe``, ``Auditor``, ``Validator``, ``Publisher``),
checked when it is registered. The first registration of a name wins, and
gl's built-ins run last (``trylast``), so a third-party plugin can replace a
built-in by registering the same name. docs/plugins.md has the whole contract.
"""

import pluggy

hookspec = pluggy.HookspecMarker("gl")
hookimpl = pluggy.HookimplMarker("gl")


@hookspec
def gl_register_predictors(register):
    """Called when predictions are first needed. ``register(predictor)`` each predictor: an
    object with ``name``, ``description`` and ``predict(facts, quant) -> Prediction``, and
    optionally ``options`` (a list of ``click.Option``; their values reach ``predict`` as keywords)."""


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
    ``name``, ``description`` and ``validate(context) -> list[Finding]``, and optionally ``defaults``
    (its settings, which ``gl validate --set NAME.KEY=VALUE`` overrides)."""


@hookspec
def gl_register_publishers(register):
    """Called by ``gl publish``. ``register(publisher)`` each publisher: an object with ``name``,
    ``description``, ``available(options) -> str | None`` (None when usable, else why not) and
    ``publish(request) -> PublishResult``."""


@hookspec
def gl_register_commands(cli):
    """Called when the CLI is built, for a command gl does not define itself.
    Add ``click`` commands with ``cli.add_command(...)``."""
