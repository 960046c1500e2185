import click

from gl_plugins.cli.options import deprecated, imatrix_option, model_option, output_format, pick_model


@click.group("imatrix")
def imatrix():
    """Make, read, audit and convert importance matrices (GGUF and legacy .dat)."""


@imatrix.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@output_format()
def info(file, fmt):
    """Show what FILE holds: format, datasets, chunks, entries and per-entry statistics.

    Importance is the mean squared activation llama-quantize derives from the file
    (in_sum2 / count); statistics cover the matrices (experts) that have data.
    """
    from gl_plugins.findings import dumps
    from gl_plugins.imatrix.formats import entry_stats, read_imatrix

    imx = read_imatrix(file)
    stats = [entry_stats(imx, e) for e in imx.entries.values()]
    head = {"file": imx.path, "format": imx.format, "datasets": imx.datasets, "chunk_count": imx.chunk_count,
            "chunk_size": imx.chunk_size, "entries": len(imx.entries),
            "values": sum(e.size for e in imx.entries.values()),
            "has_in_sum": any(e.in_sum is not None for e in imx.entries.values()),
            "missing_metadata": imx.missing_keys, "ignored_tensors": imx.ignored}
    if fmt == "json":
        click.echo(dumps({**head, "stats": [s.to_dict() for s in stats]}))
        return
    chunks = f"{imx.chunk_count if imx.chunk_count is not None else '?'} chunks"
    if imx.chunk_size:
        chunks += f" × {imx.chunk_size} tokens"
    click.echo(f"{imx.path}: {'GGUF' if imx.format == 'gguf' else 'legacy .dat'} imatrix, {len(imx.entries)} "
               f"entries, {chunks}, datasets: {', '.join(imx.datasets) or '-'}")
    if imx.missing_keys:
        click.echo(f"  missing metadata (llama-quantize refuses the file): {', '.join(imx.missing_keys)}")
    unit = "tokens" if imx.format == "gguf" else "calls"
    click.echo(f"  {'entry':<40} {'ne0':>6} {'mats':>5} {unit:>12} {'min':>10} {'mean':>10} {'max':>10} "
               f"{'zeros':>6} {'NaN':>5}")
    for s in stats:
        if len(s.counts) == 1:
            counts = str(s.counts[0])
        else:
            counts = f"{min(s.counts)}-{max(s.counts)}"
            if s.zero_count_mats:
                counts += f" ({s.zero_count_mats} at 0)"
        click.echo(f"  {s.name:<40} {s.ne0:>6} {s.n_mat:>5} {counts:>12} {s.min:>10.4g} {s.mean:>10.4g} "
                   f"{s.max:>10.4g} {s.zeros:>6} {s.nans:>5}")


def _plan(quant, plan_path):
    """The TensorPlan the audit holds the imatrix against, or None."""
    from gl_plugins.errors import read_input
    from gl_plugins.plan.resolve import Rule, plan_from_dict, stock_plan
    from gl_plugins.plan.sources import plan_document, read_plan_json

    if plan_path is None:
        return stock_plan(quant, imatrix=True) if quant else None
    if plan_path.endswith(".json") or read_input(plan_path, "a plan").lstrip().startswith(b"{"):
        plan = plan_from_dict(plan_document(read_plan_json(plan_path)), where=plan_path)
        if quant:
            plan.base_type = quant
        plan.imatrix = True
        return plan
    if not quant:
        raise click.UsageError("a tensor-type file given with --plan needs --quant for the base type "
                               "llama-quantize will be given")
    from gl_plugins.plan.tensor_map import read_map

    plan = stock_plan(quant, imatrix=True)
    plan.rules = [Rule(r.pattern, r.type) for r in read_map(plan_path)]
    plan.recipe = f"map {plan_path}"
    return plan


@imatrix.command("audit")
@click.argument("model", required=False, metavar="MODEL")
@model_option(help="The model to quantize: a GGUF (its header is enough) or pkg:NAME (also positional).")
@imatrix_option(help="The importance matrix to audit (GGUF or legacy .dat).")
@click.option("--quant", "-q", metavar="TYPE", help="The llama-quantize type to be used (IQ2_XXS, Q2_K_S …).")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), metavar="MAP",
              help="A --tensor-type-file (with --quant for the base type) or a JSON plan.")
@click.option("--emit-rules", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write tensor-type rules pinning every uncovered tensor to the cheapest type needing no imatrix.")
@output_format("text", "json", "sarif")
def audit(model, model_opt, imatrix, quant, plan_path, emit_rules, fmt):
    """Hold the imatrix (--imatrix FILE) against MODEL and the intended quantization; explain every gap.

    Exit 0 when the quantization can proceed with this imatrix, 1 when llama-quantize
    would refuse or make garbage, 2 on bad input.
    """
    from gl_plugins import host
    from gl_plugins.errors import GLError
    from gl_plugins.facts import load_facts
    from gl_plugins.findings import Finding, by_severity, dumps, exit_status, summary
    from gl_plugins.imatrix.coverage import MISMATCH, coverage_of, ranges
    from gl_plugins.imatrix.formats import read_imatrix
    from gl_plugins.plan.resolve import resolve

    model, file = _audit_inputs(model, model_opt, imatrix)
    if emit_rules and not (quant or plan_path):
        raise click.UsageError("--emit-rules needs --quant or --plan: the rules depend on the intended types")
    facts = load_facts(model)
    if not facts.tensors:
        raise GLError(f"{model}: the audit needs the model's tensor list; give its GGUF (the header is "
                      f"enough), not {facts.kind} facts")
    imx = read_imatrix(file)
    plan = _plan(quant, plan_path)
    resolution = resolve(plan, facts) if plan else None
    assignments = resolution.assignments if resolution else None
    cov = coverage_of(imx, facts, assignments)  # the coverage auditor reuses it: computed once per audit
    findings = []
    for name, auditor in host.collect("gl_register_auditors").items():
        try:
            found = host.call(auditor, "audit", imx, facts, assignments, items=Finding)
        except host.PluginFailed as e:
            host.report(e)
            continue
        for f in found:
            f.source = f.source or name
            findings.append(f)
    findings = by_severity(findings)
    rem = None
    if emit_rules:
        from gl_plugins.imatrix.remedy import remedy, write_rules

        uncovered = [n for n, cause in cov.missing.items() if cause != MISMATCH]
        rem = remedy(plan, facts, resolution, uncovered)
        write_rules(emit_rules, rem)
        from gl_plugins.plan.resolve import command

        run = ["llama-quantize", *command(rem.after.plan, facts.source, "OUT.gguf", map_path=emit_rules,
                                          imatrix_path=file)]
    status = host.exit_status(exit_status(findings), "gl_register_auditors")
    if fmt == "sarif":
        from gl_plugins.sarif import dumps as sarif_dumps

        click.echo(sarif_dumps(findings, command="gl imatrix audit", artifact=imx.path))
    elif fmt == "json":
        doc = {"imatrix": imx.path, "format": imx.format, "model": facts.source,
               "quant": plan.base_type if plan else None, "coverage": cov.to_dict(),
               "missing": list(cov.missing), "missing_ranges": ranges(cov.missing),
               "findings": [_finding_dict(f) for f in findings], "exit_status": status}
        if resolution:
            doc["bpw"] = round(resolution.bpw, 4)
        if rem:
            doc["remedy"] = {**rem.to_dict(), "file": emit_rules, "command": run}
        click.echo(dumps(doc))
    else:
        _print_text(imx, facts, plan, resolution, cov, findings, rem, emit_rules)
        if rem:
            import shlex

            click.echo(f"run:      {shlex.join(run)}")
        click.echo(summary(findings))
    click.get_current_context().exit(status)


def _audit_inputs(positional, option, imatrix):
    """(model, imatrix file); the old ``gl imatrix audit FILE --model MODEL`` still works, with a note."""
    if positional and option and not imatrix:
        deprecated("`gl imatrix audit FILE --model MODEL`", "`gl imatrix audit MODEL --imatrix FILE`")
        return option, positional
    model = pick_model(positional, option)
    if not imatrix:
        raise click.UsageError("Missing option '--imatrix FILE': the importance matrix to audit.")
    return model, imatrix


def _finding_dict(f) -> dict:
    d = f.to_dict()
    return {k: d[k] for k in ("severity", "code", "tensor", "message", "hint", "evidence", "source", "file")}


def _print_text(imx, facts, plan, resolution, cov, findings, rem, emit_rules):
    from gl_plugins.imatrix.coverage import ranges

    chunks = f"{imx.chunk_count if imx.chunk_count is not None else '?'} chunks"
    if imx.chunk_size:
        chunks += f" × {imx.chunk_size}"
    click.echo(f"imatrix:  {imx.path} ({imx.format}, {len(imx.entries)} entries, {chunks})")
    click.echo(f"model:    {facts.source} ({facts.architecture}, {len(facts.tensors)} tensors)")
    if plan:
        how = plan.recipe if plan.recipe and plan.recipe != "stock" else "llama-quantize's own mixture"
        click.echo(f"quant:    {plan.base_type} ({how}, {len(plan.rules)} rules), {resolution.bpw:.3f} bpw")
        what = "tensors whose planned type needs an imatrix"
    else:
        click.echo("quant:    not given (--quant/--plan); checking every quantizable weight")
        what = "quantizable weights"
    click.echo(f"coverage: {len(cov.covered)}/{len(cov.required)} {what} ({cov.percent:.1f}%)"
               + (f", {len(cov.partial)} with unrouted experts" if cov.partial else ""))
    if cov.missing:
        click.echo(f"missing:  {', '.join(ranges(cov.missing))}")
    for f in findings:
        click.echo(f.text())
    if rem:
        click.echo(f"rules:    wrote {emit_rules}: {rem.summary()}")
        for opt, t in rem.options.items():
            click.echo(f"option:   --{opt.replace('_', '-')} {t.lower()} (llama-quantize applies it before any "
                       f"rule, so the rules file cannot; the command below carries it)")
        if rem.still_needing:
            click.echo(f"          still needing an imatrix: {', '.join(ranges(rem.still_needing))}")


@imatrix.command("make")
@click.argument("model", required=False, metavar="MODEL")
@model_option()
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the imatrix here (default: only gl's cache; its path is printed).")
@click.option("--chunks", type=click.IntRange(min=1), default=8, show_default=True,
              help="512-token chunks of the calibration text to run.")
def make(model, model_opt, out, chunks):
    """Compute an importance matrix of MODEL with llama-imatrix on gl's calibration text.

    The calibration text is a slice of Python's pydoc_data.topics that gl never
    evaluates on (docs/imatrix.md names the slices). The result is cached per
    model and reused; the GGUF imatrix format is written.
    """
    from gl_plugins.imatrix.calibrate import make as make_imatrix
    from gl_plugins.toolchain.samples import local_model

    model = pick_model(model, model_opt)
    path = make_imatrix(local_model(model), out=out, chunks=chunks, echo=lambda m: click.echo(f"gl: {m}", err=True))
    click.echo(path)


@imatrix.command("convert")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("dst", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--to", "to", type=click.Choice(["gguf", "dat"]),
              help="Target format (default: from OUT's suffix, .gguf or else .dat).")
@click.option("--chunk-size", type=click.IntRange(min=1), metavar="N",
              help="Tokens per chunk to record when IN is a .dat (which does not store it); default 512.")
def convert(src, dst, to, chunk_size):
    """Convert an imatrix between the GGUF and the legacy .dat format.

    The importance llama-quantize uses is kept; what the target cannot hold
    (per-expert counts, in_sum, chunk size in .dat) is named on stderr.
    """
    from gl_plugins.imatrix.formats import convert as convert_file
    from gl_plugins.imatrix.formats import read_imatrix

    to = to or ("gguf" if dst.lower().endswith(".gguf") else "dat")
    imx = read_imatrix(src)
    for w in convert_file(imx, dst, to, chunk_size):
        click.echo(f"gl: warning: {w}", err=True)
    click.echo(f"wrote {dst} ({to}, from {imx.format})")
