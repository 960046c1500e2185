"""``gl quantize MODEL OUT (--recipe NAME [recipe options] | --map FILE --base-type T | --base-type T)``."""

from __future__ import annotations

import click

from gl_plugins.cli.options import MODEL_HELP, imatrix_option, model_option, output_format, pick_model
from gl_plugins.cli.plugin_options import RecipeOptionsCommand, given


@click.command(cls=RecipeOptionsCommand)
@click.argument("paths", nargs=-1, metavar="MODEL OUT")
@model_option(help=MODEL_HELP.replace("(also positional)", "(also the first positional)"))
@click.option("--recipe", metavar="NAME", help="Make the plan with this recipe (its options follow; "
                                                 "`gl quantize --recipe NAME --help` lists them).")
@click.option("--map", "map_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="A hand-written --tensor-type-file (with --base-type).")
@click.option("--base-type", metavar="T", help="llama-quantize file type: for tensors the map does not name, "
                                                "or alone for a stock quantization.")
@imatrix_option()
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="llama-quantize threads (default: 2, or $GL_THREADS).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--guard", is_flag=True,
              help="Also quantize llama.cpp's stock type of nearest size, measure both against MODEL (mean KLD, "
                   "generation loops) and keep the better file; both figures are printed and recorded.")
@output_format()
def quantize(paths, model_opt, recipe, map_path, base_type, imatrix, threads, force, guard, fmt, **recipe_options):
    """Quantize MODEL (a GGUF) to OUT with an explicit plan, and record what was intended.

    The plan is resolved first (every tensor's type, the size and bits per
    weight are printed), then the real llama-quantize runs with the complete
    command line, which is printed too. OUT appears only when llama-quantize
    succeeded; OUT.gl.json beside it holds the source and imatrix digests,
    the plan, the exact command, the llama.cpp version and the prediction.
    `gl validate OUT` then checks the file against that plan.

    With --guard (for a recipe or a map) the stock type of nearest size is
    quantized too, both files are measured against MODEL (mean KL divergence
    on 4 x 512 tokens of the evaluation text, the generation-loop check), and
    OUT is the better one: gl never writes a mix that measured worse than
    stock. The provenance records both outcomes under "guard".
    """
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.findings import dumps
    from gl_plugins.plan.sources import plan_for
    from gl_plugins.quantize.run import quantize as run
    from gl_plugins.toolchain.samples import local_model

    model, out = _model_and_out(paths, model_opt)
    given_options = given(recipe_options)
    if recipe and map_path:
        raise click.UsageError("give either --recipe (with its options) or --map (with --base-type), not both")
    if given_options and not recipe:
        raise click.UsageError("recipe options need --recipe NAME")
    if recipe and base_type:
        raise click.UsageError("--base-type goes with --map or alone; a recipe chooses its own base type")
    if map_path and not base_type:
        raise click.UsageError("--map needs --base-type T: the llama-quantize type for tensors the map "
                               "does not name")
    if not (recipe or map_path or base_type):
        raise click.UsageError("say how to quantize: --recipe NAME, --map FILE --base-type T, or --base-type T")
    if guard and not (recipe or map_path):
        raise click.UsageError("--guard compares a plan with llama.cpp's stock type of nearest size; give "
                               "--recipe NAME or --map FILE")
    facts = facts_from_gguf(local_model(model)) if recipe else None
    plan = plan_for(facts, recipe=recipe, options=given_options, map_path=map_path, base_type=base_type,
                    imatrix=imatrix)
    as_json = fmt == "json"
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    if guard:
        from gl_plugins.validate.guard import guard as run_guarded

        result = run_guarded(model, out, plan, imatrix=imatrix, force=force, threads=threads, echo=echo).result
    else:
        result = run(model, out, plan, imatrix=imatrix, threads=threads, force=force, echo=echo)
    if as_json:
        click.echo(dumps({k: v for k, v in result.record.items() if k != "assignments"}))
    else:
        click.echo(f"next: gl validate {out}")


def _model_and_out(paths, model_opt) -> tuple[str, str]:
    """MODEL OUT, or OUT with --model MODEL."""
    if model_opt:
        if len(paths) != 1:
            raise click.UsageError("with --model MODEL give one positional argument: OUT")
        return model_opt, paths[0]
    if len(paths) != 2:
        raise click.UsageError("give MODEL and OUT (or --model MODEL and OUT)")
    return pick_model(paths[0], None), paths[1]
