"""Commands that take the options of the recipe named by ``--recipe`` (gl plan, gl quantize)."""

from __future__ import annotations

import click


def prescan(args: list[str], flag: str) -> str | None:
    """The value of ``flag`` in raw arguments, before click parses them."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def with_recipe_options(base: list[click.Parameter], args: list[str]) -> list[click.Parameter]:
    """``base`` plus the options of the installed recipe named by ``--recipe`` in ``args``."""
    params = list(base)
    name = prescan(args, "--recipe")
    if name:
        from gl_plugins import host

        recipe = host.collect("gl_register_recipes").get(name)
        if recipe is not None:
            taken = {o for p in params for o in p.opts}
            params += [o for o in recipe.options if not taken & set(o.opts)]
    return params
