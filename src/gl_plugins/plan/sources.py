"""Where a plan comes from: a recipe with options, a hand-written map over a base type, a stock type, a JSON file.

:func:`plan_for` is the one way a build description becomes a
:class:`~gl_plugins.plan.resolve.TensorPlan`; ``gl quantize``, ``gl publish``
(building a gl.toml variant) and the pre-commit hooks all use it, so they
agree on what a variant is. Recipe options are given by key as gl.toml
writes them (``type``, ``target_bpw``, ``target-bpw`` or ``--target-bpw``)
and converted by the recipe's own ``click.Option`` types.
"""

from __future__ import annotations

import json
import os

from gl_plugins import host
from gl_plugins.errors import GLError, InputError


def unknown_recipe(name: str, installed) -> str:
    """The one sentence for a recipe no plugin provides."""
    return f"unknown recipe {name!r}; installed recipes: {', '.join(sorted(installed)) or 'none'}"


def recipe(name: str, where: str = "") -> host.Registered:
    """The installed recipe ``name``; GLError (prefixed with ``where``) when none is."""
    recipes = host.collect("gl_register_recipes")
    if name not in recipes:
        raise GLError((f"{where}: " if where else "") + unknown_recipe(name, recipes))
    return recipes[name]


def recipe_kwargs(entry: host.Registered, options: dict) -> dict:
    """Recipe options given by key (``target_bpw``, ``target-bpw`` or ``--target-bpw``), converted."""
    import click

    declared = host.options(entry)
    by_key = {}
    for opt in declared:
        keys = {opt.name} | {o.lstrip("-") for o in opt.opts} | {o.lstrip("-").replace("-", "_") for o in opt.opts}
        for k in keys:
            by_key[k] = opt
    out = {}
    for key, value in options.items():
        opt = by_key.get(str(key).lstrip("-")) or by_key.get(str(key).lstrip("-").replace("-", "_"))
        if opt is None:
            names = ", ".join(o.opts[0] for o in declared) or "none"
            raise GLError(f"recipe {entry.name} has no option {key!r}; its options: {names}")
        try:
            if value is None:
                out[opt.name] = None
            elif opt.multiple and isinstance(value, (list, tuple)):
                out[opt.name] = tuple(opt.type.convert(v, opt, None) for v in value)
            else:
                out[opt.name] = opt.type.convert(value, opt, None)
        except click.BadParameter as e:
            raise GLError(f"recipe {entry.name}: option {key!r}: {e.format_message()}") from None
    missing = [o.opts[0] for o in declared if o.required and out.get(o.name) is None]
    if missing:
        raise GLError(f"recipe {entry.name} needs {', '.join(missing)}")
    return out


def plan_from_recipe(facts, name: str, options: dict | None = None, imatrix: str | os.PathLike | None = None,
                     where: str = ""):
    """The plan recipe ``name`` makes for ``facts``; its own ``--imatrix`` option gets ``imatrix``."""
    from gl_plugins.plan.resolve import TensorPlan

    entry = recipe(name, where)
    kwargs = recipe_kwargs(entry, options or {})
    for opt in host.options(entry):
        if "--imatrix" in opt.opts and imatrix and opt.name not in kwargs:
            kwargs[opt.name] = os.fspath(imatrix)
    return host.call(entry, "plan", facts, returns=TensorPlan, **kwargs)


def plan_from_map(map_path: str | os.PathLike, base_type: str, imatrix: bool = False):
    """A plan from a hand-written tensor-type map over a llama-quantize base type."""
    from gl_plugins.ggml_types import get_ftype
    from gl_plugins.plan.resolve import Rule, TensorPlan
    from gl_plugins.plan.tensor_map import read_map

    rules = [Rule(r.written, r.type_written) for r in read_map(map_path)]
    return TensorPlan(base_type=get_ftype(base_type), rules=rules, imatrix=imatrix, recipe="map",
                      params={"map": os.fspath(map_path)})


def plan_for(facts, *, recipe: str | None = None, options: dict | None = None, map_path=None,
             base_type: str | None = None, imatrix=None, where: str = ""):
    """The plan a build describes: a recipe with options, a map over a base type, or a stock base type.

    ``imatrix`` is the importance matrix the build uses (a path), or None. ``where`` names the
    description in messages (e.g. a gl.toml key path).
    """
    from gl_plugins.plan.resolve import stock_plan

    prefix = f"{where}: " if where else ""
    if recipe:
        return plan_from_recipe(facts, recipe, options, imatrix, where=f"{where}.recipe" if where else "")
    if map_path:
        if not base_type:
            raise GLError(f"{prefix}a map needs a base type (the llama-quantize type for tensors it does not name)")
        return plan_from_map(map_path, base_type, imatrix=imatrix is not None)
    if base_type:
        return stock_plan(base_type, imatrix=imatrix is not None)
    raise GLError(f"{prefix}say how to quantize: a recipe, a map with a base type, or a base type")


def read_plan_json(path: str | os.PathLike):
    """The JSON document in ``path`` (a plan, ``gl plan --json`` output, a provenance record)."""
    from gl_plugins.errors import read_input

    try:
        return json.loads(read_input(path, "a JSON plan"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"is not a JSON plan ({e})") from None


def plan_document(doc):
    """The plan in a JSON document: itself, or the one ``gl plan --json`` output holds under "plan"."""
    return doc["plan"] if isinstance(doc, dict) and isinstance(doc.get("plan"), dict) else doc
