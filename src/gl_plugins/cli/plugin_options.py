"""Commands that take options a plugin declares: the chosen recipe's (gl plan, gl quantize), every predictor's
(gl predict)."""

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


def with_options_of(base: list[click.Parameter], entries, skip_failing: bool = False):
    """``base`` plus the options the registered ``entries`` declare, and which entry owns each
    (parameter name -> entry name). An option whose flag is taken already is left out. With
    ``skip_failing`` an entry whose options cannot be read is reported and passed over."""
    from gl_plugins import host

    params = list(base)
    owners: dict[str, str] = {}
    for entry in entries:
        taken = {o for p in params for o in p.opts}
        try:
            declared = host.options(entry)
        except host.PluginFailed as e:
            if not skip_failing:
                raise
            host.report(e)
            continue
        for opt in declared:
            if not taken & set(opt.opts):
                params.append(opt)
                owners[opt.name] = entry.name
    return params, owners


def with_recipe_options(base: list[click.Parameter], args: list[str]) -> list[click.Parameter]:
    """``base`` plus the options of the installed recipe named by ``--recipe`` in ``args``."""
    name = prescan(args, "--recipe")
    if not name:
        return list(base)
    from gl_plugins import host

    recipe = host.collect("gl_register_recipes").get(name)
    return with_options_of(base, [recipe] if recipe is not None else [])[0]


class RecipeOptionsCommand(click.Command):
    """A command that takes the options of the recipe named by ``--recipe`` (shown by ``--help``)."""

    def parse_args(self, ctx, args):
        if not hasattr(self, "_own_params"):
            self._own_params = list(self.params)
        self.params = with_recipe_options(self._own_params, args)
        return super().parse_args(ctx, args)


def given(options: dict) -> dict:
    """The plugin options the user gave (click fills the rest with None or an empty tuple)."""
    return {k: v for k, v in options.items() if v is not None and v != ()}
