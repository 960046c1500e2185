"""``gl plan``: make a tensor map with a recipe, lint a hand-written one (``gl plan lint``), or measure
each tensor's quantization error (``gl plan errors``)."""

from __future__ import annotations

import click

from gl_plugins.cli.options import (MODEL_HELP, chosen_format, deprecated, imatrix_option, model_option,
                                    output_format, pick_model)
from gl_plugins.cli.plugin_options import given, with_recipe_options

MIB = 1024 * 1024
_BARE = "-"  # --imatrix given without a FILE (the old flag)


def _plan(model, model_opt, recipe, output, fmt, as_json, verify, explain, **options):
    """Make a llama.cpp tensor-type map for MODEL with a recipe and show what it will do.

    Prints each class of tensors with its types, count and size, the totals
    (bytes, bits per weight), the tensors whose type had to be fitted to their
    row length, and the complete llama-quantize command. With -o the map is
    written there (atomically); the command names it. --explain adds, per tensor
    class, why the recipe chose its types (budget: the error, measured or from
    the table, the weight and where it comes from, the bytes spent).
    """
    from gl_plugins import host
    from gl_plugins.errors import GLError
    from gl_plugins.facts import load_facts
    from gl_plugins.findings import dumps
    from gl_plugins.plan import sources
    from gl_plugins.plan.resolve import command, plan_to_dict, resolve
    from gl_plugins.plan.tensor_map import render, write_map

    model = pick_model(model, model_opt)
    as_json = chosen_format(fmt, as_json) == "json"
    if not recipe:
        recipes = host.collect("gl_register_recipes")
        raise click.UsageError("choose a recipe with --recipe NAME (one of: " + ", ".join(sorted(recipes)) + ")")
    sources.recipe(recipe)  # an unknown recipe is said before the model is read
    facts = load_facts(model)
    if not facts.tensors:
        raise GLError(f"{model}: gl needs the tensor list to plan; give a GGUF file, not {facts.kind} facts")
    plan = sources.plan_from_recipe(facts, recipe, given(options))
    if explain and not isinstance(plan.params.get("explain"), dict):
        raise GLError(f"recipe {recipe} records no explanation of its choices; --explain works with budget")
    res = resolve(plan, facts)
    if output:
        write_map(output, plan.rules)
    imatrix_path = plan.params.get("imatrix") if isinstance(plan.params.get("imatrix"), str) else None
    cmd = command(plan, "INPUT", "OUTPUT", output or ("MAP" if plan.rules else None), imatrix_path)
    verified = None
    if verify:
        from gl_plugins.plan.dry_run import disagreements, dry_run

        if facts.kind != "gguf":
            raise GLError(f"{model}: --verify needs a GGUF file for llama-quantize to read")
        verified = disagreements(res, dry_run(facts.source, plan, imatrix_path=imatrix_path))
    if as_json:
        click.echo(dumps({
            "model": facts.source, "recipe": recipe, "params": plan.params, "plan": plan_to_dict(plan),
            "bpw": round(res.bpw, 4), "bytes": res.bytes, "n_params": res.n_params,
            "classes": _classes(res), "fallbacks": [a.name for a in res.fallbacks()],
            "needs_imatrix": [a.name for a in res.needs_imatrix()],
            "tensors": [{"name": a.name, "type": a.type, "reason": a.reason, "bytes": a.bytes}
                        for a in res.assignments],
            "map_path": output, "map": render(plan.rules), "command": cmd,
            **({"explain": plan.params["explain"]} if explain else {}),
            **({"verify": {"agrees": not verified, "disagreements": verified}} if verify else {})}))
    else:
        _print_plan(facts, recipe, plan, res, output, cmd)
        if explain:
            _print_explain(plan.params)
        if verify:
            if verified:
                click.echo(f"llama-quantize --dry-run disagrees on {len(verified)} point(s):")
                for line in verified[:30]:
                    click.echo(f"  {line}")
            else:
                click.echo(f"llama-quantize --dry-run agrees on all {len(res.assignments)} tensors and the total")
    if verified:
        click.get_current_context().exit(1)


def _classes(res) -> list[dict]:
    from gl_plugins.model.tensors import role

    rows: dict[str, dict] = {}
    for a in res.assignments:
        key = "not quantized (norms, 1-D)" if a.reason == "not quantizable" else role(a.name)
        row = rows.setdefault(key, {"class": key, "tensors": 0, "bytes": 0, "n_params": 0, "types": {}})
        row["tensors"] += 1
        row["bytes"] += a.bytes
        row["n_params"] += a.n_elements
        row["types"][a.type] = row["types"].get(a.type, 0) + 1
    out = sorted(rows.values(), key=lambda r: (r["class"].startswith("not quantized"), -r["bytes"]))
    for r in out:
        r["bpw"] = round(r["bytes"] * 8 / r["n_params"], 3) if r["n_params"] else 0.0
    return out


def _print_plan(facts, recipe, plan, res, output, cmd) -> None:
    import os
    import shlex

    echo = click.echo
    echo(f"{os.path.basename(facts.source)}: {facts.architecture}, {len(facts.tensors)} tensors, "
         f"{res.n_params / 1e6:.1f}M parameters; recipe {recipe}")
    shown = {k: v for k, v in plan.params.items() if k not in ("fitted", "classes", "n_params", "explain")}
    echo("parameters: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    echo("")
    echo(f"  {'class':<28}{'tensors':>8}  {'types':<26}{'MiB':>9}{'bpw':>8}")
    for row in _classes(res):
        types = ", ".join(f"{t}x{n}" if len(row["types"]) > 1 else t for t, n in sorted(row["types"].items()))
        echo(f"  {row['class']:<28}{row['tensors']:>8}  {types:<26}{row['bytes'] / MIB:>9.2f}{row['bpw']:>8.2f}")
    echo(f"  {'total':<28}{len(res.assignments):>8}  {'':<26}{res.bytes / MIB:>9.2f}{res.bpw:>8.3f}")
    echo("")
    fitted = plan.params.get("fitted") or []
    if fitted:
        groups: dict[tuple, list] = {}
        for name, asked, used in fitted:
            groups.setdefault((asked, used), []).append(name)
        echo(f"fitted to row length ({len(fitted)} tensors; the map names the type llama.cpp can use):")
        for (asked, used), names in sorted(groups.items()):
            more = f" … ({len(names)})" if len(names) > 3 else ""
            echo(f"  {asked} -> {used}: {', '.join(names[:3])}{more}")
    fb = res.fallbacks()
    echo(f"falls back in llama-quantize: {len(fb)} tensor(s)" + (":" if fb else ""))
    for a in fb[:20]:
        echo(f"  {a.name}: {a.requested} -> {a.type}")
    needs = res.needs_imatrix()
    if needs:
        echo(f"needs an imatrix: {len(needs)} tensor(s) ({', '.join(sorted({a.type for a in needs}))})")
    if output:
        echo(f"map written: {output} ({len(plan.rules)} rules)")
    elif plan.rules:
        echo(f"map: {len(plan.rules)} rules (write it with -o FILE; the command calls it MAP)")
    echo("llama-quantize " + " ".join(shlex.quote(a) for a in cmd))


def _print_explain(params) -> None:
    """Why the recipe chose each class's types, from ``params["explain"]`` (see the budget recipe)."""
    echo = click.echo
    doc = params["explain"]
    echo("")
    if doc["errors"] == "measured":
        imx = f"weighted by {doc['imatrix']}" if doc.get("imatrix") else "no imatrix"
        echo(f"errors measured on this model's weights ({doc['rows']} rows per tensor, {imx}) by {doc['measured_by']}")
        if doc.get("concentrated"):
            _echo_concentrated(doc["concentrated"])
    else:
        echo("errors from gl's table (Gaussian weights, bench/quant_error.py)")
    about = doc.get("weights") or {}
    if about.get("fitted"):
        echo(f"weights: {about['weights']}, {about['fitted']} ({about['fitted_by'] or 'bench/sensitivity.py'}); "
             f"groups never measured: role prior x {about['prior_scale']:.3g}")
        costs = about.get("compute_costs") or {}
        if costs:
            echo("compute cost (KLD per unit of weight, by the activations' type ggml multiplies in): "
                 + ", ".join(f"{a} {c:.3g}" for a, c in costs.items()) + "; float types none")
    if params.get("chosen"):
        stock = (f"stock {params['stock_type']} at {params['stock_bpw']} bpw: {params['stock_estimated_error']}"
                 if params.get("stock_type") else "no stock type fits the target with measured errors")
        echo(f"chosen: {params['chosen']} (estimated mean KLD: budget {params['budget_estimated_error']} at "
             f"{params['budget_bpw']} bpw, {stock})")
        if params.get("min_gain") and params["budget_bpw"] < params["target_bpw"] - 0.005:
            echo(f"the budget plan stops at {params['budget_bpw']} of {params['target_bpw']} bpw: more bytes would "
                 f"buy less than {params['min_gain']:g} % of estimated KLD per % of size (--min-gain)")
    echo(f"  {'class':<20}{'tensors':>8}  {'types':<26}{'error':>9}  {'from':<9}{'weight':>20}  "
         f"{'weight from':<20}{'weight x error':>15}{'compute':>10}{'MiB':>9}")
    for r in doc["classes"]:
        types = ", ".join(f"{t}x{n}" if len(r["types"]) > 1 else t for t, n in r["types"].items())
        err = f"{r['error']:.2e}" if r["error"] is not None else "-"
        weight = "/".join(f"{w:.3g}" for w in r["weights"]) if len(r["weights"]) <= 3 \
            else f"{min(r['weights']):.3g}-{max(r['weights']):.3g}"
        note = "" if r["in_budget"] else "  (outside the budget: --embedding-type)"
        echo(f"  {r['class']:<20}{r['tensors']:>8}  {types:<26}{err:>9}  {r['error_source']:<9}{weight:>20}  "
             f"{r['weight_source']:<20}{r['weighted_error']:>15.3e}{r.get('compute_cost', 0.0):>10.2e}"
             f"{r['bytes'] / MIB:>9.2f}{note}")


_MAKE_PARAMS = [
    click.Argument(["model"], required=False, metavar="MODEL"),
    click.Option(["--model", "-m", "model_opt"], metavar="MODEL", help=MODEL_HELP),
    click.Option(["--recipe"], metavar="NAME", help="Recipe (tensor-map generator) to use."),
    click.Option(["-o", "--output"], type=click.Path(dir_okay=False), help="Write the tensor-type file here."),
    click.Option(["--format", "fmt"], type=click.Choice(["text", "json"]), default=None,
                 help="Output: text (default), json (same as --json)."),
    click.Option(["--json", "as_json"], is_flag=True, help="Same as --format json."),
    click.Option(["--explain"], is_flag=True, help="Also print, per tensor class, why the recipe chose its "
                                                   "types (budget: error, weight, bytes; JSON: \"explain\")."),
    click.Option(["--verify"], is_flag=True, help="Also run llama-quantize --dry-run on MODEL (a GGUF) and "
                                                  "check that it agrees tensor by tensor; exit 1 if not."),
]


class PlanGroup(click.Group):
    """``gl plan MODEL --recipe NAME [recipe options]`` makes a map; ``gl plan lint`` is a subcommand.

    Without a subcommand name first, the group itself is the recipe command, and the options of
    the chosen recipe are added when ``--recipe`` is seen, so ``gl plan --recipe budget --help``
    shows budget's options.
    """

    def parse_args(self, ctx, args):
        if args and args[0] in self.commands:
            self.params = []
            return super().parse_args(ctx, args)
        ctx.meta["gl.plan.make"] = True
        ctx.allow_interspersed_args, ctx.allow_extra_args = True, False  # parsed as a plain command
        self.params = with_recipe_options(_MAKE_PARAMS, args)
        return click.Command.parse_args(self, ctx, args)

    def invoke(self, ctx):
        if ctx.meta.get("gl.plan.make"):
            return click.Command.invoke(self, ctx)
        return super().invoke(ctx)

    def collect_usage_pieces(self, ctx):
        return click.Command.collect_usage_pieces(self, ctx)

    def format_usage(self, ctx, formatter):
        super().format_usage(ctx, formatter)
        formatter.write_usage(f"{ctx.command_path} lint", "[OPTIONS] MODEL --map MAP", prefix=" " * 7)
        formatter.write_usage(f"{ctx.command_path} errors", "[OPTIONS] MODEL", prefix=" " * 7)

    def format_epilog(self, ctx, formatter):
        from gl_plugins import host

        recipes = host.collect("gl_register_recipes")
        rows = [(n, host.description(r)) for n, r in sorted(recipes.items())]
        with formatter.section("Recipes (gl plan --recipe NAME --help shows a recipe's options)"):
            formatter.write_dl(rows)


def _make(**params):
    """The group's own work: making a map (nothing when a subcommand runs, which leaves no params)."""
    return _plan(**params) if params else None


plan = PlanGroup("plan", callback=_make, params=list(_MAKE_PARAMS), help=_plan.__doc__, invoke_without_command=True,
                 short_help="Make or lint a llama.cpp tensor-type map.")


@plan.command("lint")
@click.argument("model", required=False, metavar="MODEL")
@model_option(help="The model the map is for: a GGUF, or pkg:NAME (also positional).")
@click.option("--map", "map_path", type=click.Path(dir_okay=False), metavar="MAP",
              help="The hand-written --tensor-type-file to check.")
@click.option("--tensor-type", "tensor_types", multiple=True, metavar="PATTERN=TYPE",
              help="A rule as given to llama-quantize --tensor-type (repeatable; read before MAP).")
@click.option("--base-type", metavar="TYPE", help="The file type given to llama-quantize (default: assumed "
                                                  "from the rules, and said so).")
@click.option("--target-bpw", type=float, help="The bits per weight the map is meant to give.")
@click.option("--token-embedding-type", metavar="TYPE", help="As given to llama-quantize.")
@click.option("--output-tensor-type", metavar="TYPE", help="As given to llama-quantize.")
@click.option("--imatrix", is_flag=False, flag_value=_BARE, type=click.Path(dir_okay=False), metavar="FILE",
              help="The importance matrix llama-quantize will get.")
@output_format("text", "json", "sarif")
def lint(model, model_opt, map_path, tensor_types, base_type, target_bpw, token_embedding_type, output_tensor_type,
         imatrix, fmt):
    """Check a hand-written tensor-type MAP against MODEL: what llama-quantize will really do with it.

    Reports every token llama-quantize would reject (with its line), patterns that
    lowercasing changes, rules that match nothing, are shadowed by earlier rules or
    match more than their text says (blk.1 also catches blk.10-blk.19), unescaped
    dots, types that fall back on these row lengths and what that costs, and the
    real bits per weight against --target-bpw.

    Exit status: 0 clean; 1 when something makes the result differ from what the
    file says; 2 when llama-quantize would reject the map (or the input is unusable).
    """
    from gl_plugins.errors import GLError
    from gl_plugins.facts import load_facts
    from gl_plugins.findings import dumps, summary
    from gl_plugins.plan.lint import lint_file

    model, map_path = _lint_inputs(model, model_opt, map_path)
    if imatrix == _BARE:
        deprecated("--imatrix without a FILE", "--imatrix FILE (the importance matrix llama-quantize will get)")
    if not map_path and not tensor_types:
        raise click.UsageError("give a MAP file or at least one --tensor-type PATTERN=TYPE")
    facts = load_facts(model)
    if not facts.tensors:
        raise GLError(f"{model}: linting needs the model's tensor list; give a GGUF file")
    report = lint_file(map_path, facts, option_rules=list(tensor_types), base_type=base_type,
                       target_bpw=target_bpw, token_embedding_type=token_embedding_type,
                       output_tensor_type=output_tensor_type, imatrix=bool(imatrix))
    ctx = click.get_current_context()
    if fmt == "sarif":
        from gl_plugins.sarif import dumps as sarif_dumps

        click.echo(sarif_dumps(report.findings, command="gl plan lint", artifact=map_path or model))
        ctx.exit(report.exit_status)
    if fmt == "json":
        click.echo(dumps(report.to_dict()))
        ctx.exit(report.exit_status)
    for f in report.findings:
        click.echo(f.text())
    res = report.resolution
    prefix = "if the rejected tokens are removed, " if not report.usable else ""
    click.echo(f"{prefix}llama-quantize {report.base_type} with this map gives {res.bpw:.2f} bpw "
               f"({res.bytes / MIB:.2f} MiB, {len(res.fallbacks())} tensor(s) falling back)")
    click.echo(summary(report.findings))
    ctx.exit(report.exit_status)


def _lint_inputs(positional, option, map_path):
    """(model, map); the old ``gl plan lint MAP --model MODEL`` still works, with a note."""
    if positional and option and not map_path:
        deprecated("`gl plan lint MAP --model MODEL`", "`gl plan lint MODEL --map MAP`")
        return option, positional
    return pick_model(positional, option), map_path


@plan.command("errors")
@click.argument("model", required=False, metavar="MODEL")
@model_option()
@imatrix_option("Importance matrix: errors weighted by its column importances, as llama-quantize quantizes "
                "with it.")
@click.option("--types", metavar="T,T,...", help="Comma-separated types to measure (default: the budget "
                                                 "recipe's candidates).")
@click.option("--rows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Rows sampled per tensor, evenly spaced (default: 128; all rows of smaller tensors).")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="Threads for the measurement (default: $GL_THREADS, else 2).")
@output_format("text", "json")
def errors(model, model_opt, imatrix, types, rows, threads, fmt):
    """Measure each tensor's quantization error in each type, with ggml's own quantizers.

    Samples rows of every quantizable tensor of MODEL, quantizes them to each type
    as llama-quantize would (with the imatrix row weights when --imatrix is given),
    dequantizes them back and prints, per tensor class and type, the mean relative
    error sum((w - q)^2 m) / sum(w^2 m). Types whose block does not divide a
    tensor's rows, or that need an imatrix there is none for, are listed as skipped.
    Results are cached by the digests of the model, the imatrix and the helper: a
    rerun is immediate and an interrupted run resumes.
    """
    from gl_plugins.findings import dumps
    from gl_plugins.plan.measured import DEFAULT_ROWS, measure_errors

    model = pick_model(model, model_opt)
    table = measure_errors(model, imatrix=imatrix, types=types, rows=rows or DEFAULT_ROWS, threads=threads,
                           echo=lambda m: click.echo(f"gl: {m}", err=True))
    if fmt == "json":
        click.echo(dumps(table.to_dict()))
        return
    _print_errors(table)


def _print_errors(table) -> None:
    import os

    from gl_plugins.ggml_types import get_type
    from gl_plugins.plan.measured import REASONS

    echo = click.echo
    classes = table.classes()
    n_rows = sum(t.rows for t in table.tensors.values())
    echo(f"{os.path.basename(table.model)}: {len(table.tensors)} tensors measured on {n_rows} sampled rows "
         f"(up to {table.rows} per tensor), " + (f"weighted by {table.imatrix}" if table.imatrix else "no imatrix"))
    echo(f"measured by {table.helper}")
    echo(f"cache: {table.cache} ({table.measured} tensor(s) measured now, {table.seconds:.1f} s)")
    echo("")
    names = list(classes)
    width = max(9, *(len(n) + 1 for n in names))
    echo("mean relative error per tensor class (tensors in each class below its name)")
    echo(f"  {'type':<8}{'bpw':>6}  " + "".join(f"{n:>{width}}" for n in names))
    echo(f"  {'':<8}{'':>6}  " + "".join(f"{classes[n]['tensors']:>{width}}" for n in names))
    types = sorted(table.types, key=lambda t: -get_type(t).bits_per_weight)
    for ty in types:
        cells = []
        for n in names:
            v = classes[n]["errors"].get(ty)
            cells.append(f"{v:>{width}.2e}" if v is not None else f"{'-':>{width}}")
        echo(f"  {ty:<8}{get_type(ty).bits_per_weight:>6.2f}  " + "".join(cells))
    skipped: dict[tuple[str, str], dict[str, int]] = {}
    for n in names:
        for ty, reasons in classes[n]["skipped"].items():
            for why, count in reasons.items():
                skipped.setdefault((why, ty), {})[n] = count
    if skipped:
        echo("")
        echo("skipped (-):")
        for (why, ty), where in sorted(skipped.items(), key=lambda kv: (kv[0][0], types.index(kv[0][1]))):
            echo(f"  {ty} on {sum(where.values())} tensor(s) ({', '.join(where)}): {REASONS.get(why, why)}")
    for name, why in table.skipped_tensors.items():
        echo(f"not measured: {name}: {why}")
    if table.concentrated:
        echo("")
        _echo_concentrated(sorted(table.concentrated))


def _echo_concentrated(names) -> None:
    """The line naming the tensors whose errors come from the concentrated-importance rule."""
    from gl_plugins.plan.measured import CONCENTRATED

    click.echo(f"importance on a few columns ({', '.join(names)}): the weighted error is below "
               f"{CONCENTRATED:g}x the unweighted one there, so these use the unweighted error x the "
               f"model's median weighted/unweighted ratio per type")
