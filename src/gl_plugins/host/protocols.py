"""The plugin contract in code: what an object each registry hook registers must have.

Each registry hook registers one kind of object. Its :class:`typing.Protocol`
names the attributes and methods gl uses; :func:`missing` checks an object
against it when it is registered, without calling anything (a property is not
evaluated), so a frozen dataclass, a plain class or a module-level instance
all qualify. What a protocol leaves out is optional: a predictor may declare
``options`` as a recipe does, a validator may declare ``defaults``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import click

    from gl_plugins.facts import ModelFacts
    from gl_plugins.findings import Finding
    from gl_plugins.imatrix.formats import IMatrix
    from gl_plugins.plan.resolve import Assignment, TensorPlan
    from gl_plugins.predict.predictions import Prediction
    from gl_plugins.publish.prepare import PublishOptions, PublishRequest, PublishResult
    from gl_plugins.validate.run import ValidationContext


class Predictor(Protocol):
    """Registered by ``gl_register_predictors``: will a model survive a quant type?

    Optional: ``options``, a list of ``click.Option`` that ``gl predict`` accepts; their values
    arrive in ``predict`` as keyword arguments under their parameter names (when given).
    """

    name: str
    description: str

    def predict(self, facts: ModelFacts, quant: str) -> Prediction: ...


class Recipe(Protocol):
    """Registered by ``gl_register_recipes``: a tensor-type-file generator."""

    name: str
    description: str
    options: list[click.Option]

    def plan(self, facts: ModelFacts, **options: Any) -> TensorPlan: ...


class Auditor(Protocol):
    """Registered by ``gl_register_auditors``: holds an imatrix against a model and its planned types."""

    name: str
    description: str

    def audit(self, imatrix: IMatrix, facts: ModelFacts, assignments: list[Assignment] | None) -> list[Finding]: ...


class Validator(Protocol):
    """Registered by ``gl_register_validators``: checks a quantized GGUF.

    Optional: ``defaults``, a dict of settings (``gl validate --set NAME.KEY=VALUE`` overrides them).
    """

    name: str
    description: str

    def validate(self, context: ValidationContext) -> list[Finding]: ...


class Publisher(Protocol):
    """Registered by ``gl_register_publishers``: turns a prepared request into a published model."""

    name: str
    description: str

    def available(self, options: PublishOptions) -> str | None: ...

    def publish(self, request: PublishRequest) -> PublishResult: ...


# registry hook -> (what its objects are called, their protocol)
KINDS: dict[str, tuple[str, type]] = {
    "gl_register_predictors": ("predictor", Predictor),
    "gl_register_recipes": ("recipe", Recipe),
    "gl_register_auditors": ("auditor", Auditor),
    "gl_register_validators": ("validator", Validator),
    "gl_register_publishers": ("publisher", Publisher),
}


def members(protocol: type) -> list[str]:
    """The attributes and methods a protocol names, in the order it declares them."""
    names = list(protocol.__dict__.get("__annotations__", {}))
    names += [n for n, v in protocol.__dict__.items() if inspect.isfunction(v) and not n.startswith("_")]
    return names


def missing(obj: object, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (looked up without evaluating properties)."""
    out = []
    for name in members(protocol):
        try:
            inspect.getattr_static(obj, name)
        except AttributeError:
            out.append(name)
    return out
