"""``gl quantize MODEL OUT (--recipe NAME [recipe options] | --map FILE --base-type T | --base-type T)``."""

from __future__ import annotations

import click

from gl_plugins.cli.plugin_options import with_recipe_options


class RecipeOptionsCommand(click.Command):
    """A command that takes the options of the recipe named by ``--recipe`` (shown by ``--help``)."""

    def parse_args(self, ctx, args):
        if not hasattr(self, "_own_params"):
            self._own_params = list(self.params)
        self.params = with_recipe_options(self._own_params, args)
        return super().parse_args(ctx, args)


@click.command(cls=RecipeOptionsCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--recipe", metavar="NAME", help="Make the plan with this recipe (its options follow; "
                                                 "`gl quantize --recipe NAME --help` lists them).")
@click.option("--map", "map_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="A hand-written --tensor-type-file (with --base-type).")
@click.option("--base-type", metavar="T", help="llama-quantize file type: for tensors the map does not name, "
                                                "or alone for a stock quantization.")
@click.option("--imatrix", type=click.Path(dir_okay=False), metavar="FILE", help="Importance matrix to use.")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True,
              help="llama-quantize threads.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the provenance record as JSON.")
def quantize(model, out, recipe, map_path, base_type, imatrix, threads, force, as_json, **recipe_options):
    """Quantize MODEL (a GGUF) to OUT with an explicit plan, and record what was intended.

    The plan is resolved first (every tensor's type, the size and bits per
    weight are printed), then the real llama-quantize runs with the complete
    command line, which is printed too. OUT appears only when llama-quantize
    succeeded; OUT.gl.json beside it holds the source and imatrix digests,
    the plan, the exact command, the llama.cpp version and the prediction.
    `gl validate OUT` then checks the file against that plan.
    """
    from gl_plugins.toolchain.samples import local_model
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.findings import dumps
    from gl_plugins.plan.resolve import stock_plan
    from gl_plugins.quantize.run import plan_from_map, plan_from_recipe, quantize as run

    given = [n for n, v in (("--recipe", recipe), ("--map", map_path)) if v]
    if len(given) > 1:
        raise click.UsageError("give either --recipe (with its options) or --map (with --base-type), not both")
    if recipe_options and not recipe:
        raise click.UsageError("recipe options need --recipe NAME")
    if recipe:
        if base_type:
            raise click.UsageError("--base-type goes with --map or alone; a recipe chooses its own base type")
        plan = plan_from_recipe(facts_from_gguf(local_model(model)), recipe, {k: v for k, v in recipe_options.items() if v is not None and v != ()}, imatrix)
    elif map_path:
        if not base_type:
            raise click.UsageError("--map needs --base-type T: the llama-quantize type for tensors the map "
                                   "does not name")
        plan = plan_from_map(map_path, base_type)
    elif base_type:
        plan = stock_plan(base_type, imatrix=bool(imatrix))
    else:
        raise click.UsageError("say how to quantize: --recipe NAME, --map FILE --base-type T, or --base-type T")
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    result = run(model, out, plan, imatrix=imatrix, threads=threads, force=force, echo=echo)
    if as_json:
        click.echo(dumps({k: v for k, v in result.record.items() if k != "assignments"}))
    else:
        click.echo(f"next: gl validate {out}")
