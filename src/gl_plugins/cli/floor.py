"""``gl floor MODEL``: the smallest file of MODEL that passes the quality gates."""

from __future__ import annotations

import click

from gl_plugins.cli.options import imatrix_option, model_input, output_format


def _range(ctx, param, value):
    try:
        low, high = (float(x) for x in value.split("-"))
    except ValueError:
        raise click.BadParameter(f"give LOW-HIGH bits per weight, e.g. 1.5-5, not {value!r}") from None
    return low, high


def _kinds(ctx, param, value):
    return tuple(k.strip() for k in value.split(",") if k.strip())


@click.command()
@model_input(help="The full-precision base: a GGUF (F16/BF16) or pkg:NAME (also positional).")
@imatrix_option("Importance matrix of MODEL, for the candidates that use one.")
@click.option("--calibrate", is_flag=True,
              help="Make the imatrix with llama-imatrix from gl's calibration text (cached per model).")
@click.option("--max-kld", type=click.FloatRange(0, min_open=True), default=0.3, show_default=True,
              help="Gate: the highest mean KL divergence against MODEL.")
@click.option("--max-p99", type=click.FloatRange(0, min_open=True), default=None,
              help="Gate: the highest 99th-percentile KL divergence (default: none).")
@click.option("--max-loops", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Gate: the highest share of generation prompts that collapse (loop, empty, non-words).")
@click.option("--range", "bpw_range", default="1.5-5", show_default=True, metavar="LOW-HIGH", callback=_range,
              help="Bits per weight to search in.")
@click.option("--candidates", "kinds", default="stock,budget", show_default=True, callback=_kinds,
              help="Comma-separated: stock (llama.cpp's ladder of types), budget (gl's budget recipe).")
@click.option("--tolerance", type=float, default=0.1, show_default=True,
              help="bpw between the budget floor and the largest failing budget target.")
@click.option("--walk", is_flag=True, help="Measure every stock type from the smallest up instead of bisecting.")
@click.option("--guide", is_flag=True,
              help="Estimate every candidate's mean KLD first from errors ggml measures on MODEL's weights "
                   "(as the quant-error predictor does; minutes once per model, cached) and measure the "
                   "candidates around the estimated floor first.")
@click.option("--budget-errors", type=click.Choice(["gaussian", "measured"]), default="gaussian", show_default=True,
              help="The budget recipe's errors (--errors): measured needs gl plan errors' measurement.")
@click.option("--chunks", type=click.IntRange(1, 256), default=4, show_default=True,
              help="512-token chunks of the evaluation text for the KL divergence.")
@click.option("--allow-requantized", is_flag=True,
              help="Search from a base that is itself quantized (the floor is then relative to it).")
@click.option("--keep", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the smallest passing file here (with its provenance), ready for gl publish.")
@click.option("--force", is_flag=True, help="Replace the --keep file if it exists.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write DIR/report.md and DIR/floor.png (needs matplotlib).")
@click.option("--evidence", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append one evidence line per measured candidate (read by gl predict --evidence).")
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="llama-quantize threads.")
@output_format()
def floor(model, imatrix, calibrate, max_kld, max_p99, max_loops, bpw_range, kinds, tolerance, walk, guide,
          budget_errors, chunks, allow_requantized, keep, force, report_dir, evidence, threads, fmt):
    """Find the smallest file of MODEL that still passes the gates.

    Each candidate is quantized from MODEL and measured against it: mean and
    p99 KL divergence and same-top-token on gl's evaluation text, the
    generation-loop check, structure and plan match. Stock candidates are
    llama.cpp's types in the range, bisected by size; budget candidates are gl's
    budget recipe at target sizes, searched down to --tolerance. Candidates that
    need importance data are audited against the imatrix first, and the tensors
    it lacks are pinned to types that need none.

    Every outcome is cached, so a rerun (with other gates, a wider range) measures
    only what is new, and an interrupted run loses only the candidate in flight.
    Exit 0 when a floor is found, 1 when nothing in the range passes (the best
    candidate is shown), 2 on bad input.
    """
    from pathlib import Path

    from gl_plugins.findings import dumps
    from gl_plugins.floor.report import table, write_report
    from gl_plugins.floor.search import Gates, NoFloor, find_floor

    as_json = fmt == "json"
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    if imatrix and calibrate:
        raise click.UsageError("give --imatrix FILE or --calibrate, not both")
    gates = Gates(max_kld=max_kld, max_p99=max_p99, max_loops=max_loops)
    options = {"errors": budget_errors} if budget_errors != "gaussian" else {}
    missed = None
    try:
        result = find_floor(model, imatrix=imatrix, calibrate=calibrate, gates=gates, low=bpw_range[0],
                            high=bpw_range[1], kinds=kinds, chunks=chunks, tolerance=tolerance, walk=walk,
                            allow_requantized=allow_requantized, budget_options=options,
                            keep=Path(keep) if keep else None, force=force, threads=threads, guide=guide,
                            echo=echo)
    except NoFloor as e:  # what was measured is still reported and recorded; then exit 1
        missed, result = e, e.floor
    if evidence:
        _append_evidence(evidence, result)
    command = ["gl", "floor", model, *(["--imatrix", imatrix] if imatrix else []),
               *(["--calibrate"] if calibrate else []), "--max-kld", f"{max_kld:g}",
               *(["--max-p99", f"{max_p99:g}"] if max_p99 is not None else []), "--max-loops", f"{max_loops:g}",
               "--range", f"{bpw_range[0]:g}-{bpw_range[1]:g}", "--candidates", ",".join(kinds),
               "--tolerance", f"{tolerance:g}", *(["--walk"] if walk else []), *(["--guide"] if guide else []),
               *(["--budget-errors", budget_errors] if options else []), "--chunks", str(chunks),
               *(["--allow-requantized"] if allow_requantized else [])]
    report = write_report(result, report_dir, command) if report_dir else None
    if as_json:
        doc = result.to_dict()
        if report:
            doc["report"] = str(report)
        click.echo(dumps(doc))
        if missed:
            raise missed
        return
    click.echo("")
    click.echo(table(result))
    click.echo(f"{sum(1 for c in result.candidates if c.measured)} candidates in {result.seconds / 60:.1f} min")
    if report:
        click.echo(f"report: {report}")
    if evidence:
        click.echo(f"evidence appended to {evidence}; score predictors with: gl predict --evidence {evidence}")
    if result.kept:
        click.echo(f"next: gl validate {result.kept}")
    if missed:
        raise missed


def _append_evidence(path, result) -> None:
    """One evidence line per measured candidate: the stock type, or the budget plan's digest."""
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.predict.evidence import append_evidence, evidence_figures, measured_observation
    from gl_plugins.validate.candidates import plan_digest

    facts = facts_from_gguf(result.model)
    for c in result.candidates:
        if not c.measured:
            continue
        o = c.outcome
        figures = evidence_figures({"bpw": o.bpw, "loop_share": o.loops, "kld": o.kld})
        verdict = "passes" if c.passed else "fails " + "; ".join(c.why)
        note = f"gl floor ({result.gates.describe()}): {c.kind} {c.name} {verdict}"
        if c.remedy:
            note += f"; {c.remedy}"
        plan = plan_digest(c.plan) if c.kind != "stock" or c.remedy else None
        append_evidence(path, measured_observation(result.model, facts, c.plan.base_type if plan else c.name, figures,
                                                   "works" if c.passed else "fails", note, plan=plan))
