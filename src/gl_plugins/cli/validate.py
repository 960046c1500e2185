"""``gl validate QUANT`` and ``gl experiment MODEL --quant TYPE``."""

from __future__ import annotations

import os

import click

from gl_plugins.cli.options import imatrix_option, model_input, output_format


def _settings(values, target_bpw=None) -> dict:
    """``--set NAME.KEY=VALUE`` options as {validator: {key: "value"}} (typed by validate_file)."""
    out: dict = {}
    for text in values:
        name_key, sep, raw = text.partition("=")
        name, dot, key = name_key.strip().rpartition(".")
        if not sep or not dot:
            raise click.BadParameter(f"{text!r} must look like VALIDATOR.KEY=VALUE, e.g. perplexity.max_ratio=1.3",
                                     param_hint="--set")
        out.setdefault(name, {})[key] = raw.strip()
    if target_bpw is not None:
        out.setdefault("bpw", {})["target"] = float(target_bpw)
    return out


def _progress():
    def echo(name):
        click.echo(f"gl: validate: {name} …", err=True)
    return echo


def _status(findings) -> str:
    sev = {f.severity for f in findings}
    if "error" in sev:
        return "FAIL"
    if any(f.code == "validator-skipped" for f in findings):
        return "skipped"
    return "warn" if "warning" in sev else "ok"


def print_report(report) -> None:
    from gl_plugins.findings import summary

    by: dict[str, list] = {}
    for f in report.findings:
        by.setdefault(f.source or "validate", []).append(f)
    names = [n for n in by if n not in report.validators] + report.validators
    width = max((len(n) for n in names), default=8)
    hinted: set = set()
    for name in names:
        fs = by.get(name, [])
        click.echo(f"{name:<{width}}  {_status(fs)}")
        for f in fs:
            tensor = f" [{f.tensor}]" if f.tensor else ""
            click.echo(f"  {f.severity}: {f.code}{tensor}: {f.message}")
            if f.evidence:
                click.echo("    evidence: " + f.evidence.replace("\n", "\n              "))
            if f.hint and f.severity != "info" and (f.code, f.hint) not in hinted:  # once per kind
                hinted.add((f.code, f.hint))
                click.echo(f"    hint: {f.hint}")
    fig = report.figures
    shown = []
    if fig.get("bpw") is not None:
        shown.append(f"{fig['bpw']:.3f} bpw")
    if fig.get("perplexity") is not None:
        ppl = f"perplexity {fig['perplexity']:.3f}"
        if fig.get("base_perplexity") is not None:
            ppl += f" (base {fig['base_perplexity']:.3f}, ratio {fig['perplexity_ratio']:.3f})"
        shown.append(ppl)
    if fig.get("kld"):
        k = fig["kld"]
        shown.append(f"mean KLD {k['mean']:.4f} (p99 {k['p99']:.3f}, same top token {k['same_top_p']:.1%})")
    verdict = "passed" if report.passed else "FAILED"
    click.echo(f"{report.path}: {verdict}: {summary(report.findings)}" + (f"; {', '.join(shown)}" if shown else ""))


def _epilog() -> str:
    return ("Validators: structure, plan-match, bpw, loads, generation, perplexity (and any a plugin adds). "
            "Settings, e.g. --set perplexity.max_ratio=1.3 --set generation.n_predict=64, are listed in "
            "docs/validate.md. Exit status: 0 passed (warnings allowed), 1 an error finding, 2 bad input.")


BASE_HELP = ("The model QUANT was made from: a GGUF or pkg:NAME (default: the source recorded in "
             "QUANT.gl.json).")


@click.command(epilog=_epilog())
@model_input(metavar="QUANT", help="The quantized GGUF to check (also positional).")
@click.option("--base", metavar="MODEL", help=BASE_HELP)
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), metavar="MAP",
              help="The plan to hold QUANT against: a tensor-type map, a plan JSON or a .gl.json "
                   "(default: QUANT.gl.json).")
@click.option("--only", multiple=True, metavar="NAME", help="Run only these validators (repeatable, or "
                                                            "comma-separated).")
@click.option("--set", "settings", multiple=True, metavar="NAME.KEY=VALUE", help="Override a validator setting.")
@click.option("--target-bpw", type=float, help="Bits per weight the file should not exceed (bpw.target).")
@output_format("text", "json", "sarif")
def validate(model, base, plan_path, only, settings, target_bpw, fmt):
    """Check a quantized GGUF before publishing it.

    Every validator reports findings: the file is complete and matches the
    base's tensors, every tensor has the planned type, the real bits per
    weight, llama.cpp loads it, greedy generation does not collapse, and its
    perplexity against the base's. Exit 1 when any finding is an error.
    """
    from gl_plugins.findings import dumps
    from gl_plugins.validate.run import validate_file

    quant = model
    report = validate_file(quant, base=base, plan=plan_path, only=only,
                           options=_settings(settings, target_bpw), echo=_progress())
    if fmt == "sarif":
        from gl_plugins.sarif import dumps as sarif_dumps

        click.echo(sarif_dumps(report.findings, command="gl validate", artifact=quant))
    elif fmt == "json":
        click.echo(dumps(report.to_dict()))
    else:
        print_report(report)
    click.get_current_context().exit(0 if report.passed else 1)


# ---------------------------------------------------------------- experiment

def observation(model_path, facts, quant: str, report, note: str = "") -> dict:
    """An evidence line (the format ``gl predict --evidence`` reads) for one validated quantization."""
    from gl_plugins.predict.evidence import evidence_figures, measured_observation

    errors = [f for f in report.findings if f.severity == "error"]
    if not note:
        if errors:
            codes = sorted({f.code for f in errors})
            note = f"gl experiment: {', '.join(codes)}: {errors[0].message}"
        else:
            note = "gl experiment: every validator passed"
    return measured_observation(model_path, facts, quant, evidence_figures(report.figures),
                                "works" if report.passed else "fails", note)


@click.command()
@model_input(help="The model to quantize: a GGUF or pkg:NAME (also positional).")
@click.option("-q", "--quant", "quant", required=True, metavar="TYPE",
              help="llama-quantize type to try (Q2_K, Q3_K_S, IQ2_M …), a stock quantization.")
@imatrix_option()
@click.option("--evidence", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append the outcome to this evidence file (JSON Lines, read by gl predict --evidence).")
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE",
              help="Keep the quantized file here (default: a temporary file, removed afterwards).")
@click.option("--note", default="", help="Note for the evidence line (default: the failing findings).")
@click.option("--set", "settings", multiple=True, metavar="NAME.KEY=VALUE", help="Override a validator setting.")
@output_format()
def experiment(model, quant, imatrix, evidence, out, note, settings, fmt):
    """Quantize MODEL with a stock --quant type, validate it against MODEL, record the outcome.

    The outcome is "works" when every validator passed and "fails" otherwise,
    with the figures (bits per weight, perplexity and its ratio to MODEL's,
    collapsed prompts). With --evidence it is appended as one JSON line that
    `gl predict --evidence FILE` scores predictors against. Exit 0 when the
    experiment ran, whatever its outcome; 2 for bad input.
    """
    import tempfile
    from pathlib import Path

    from gl_plugins.predict.evidence import append_evidence
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.findings import dumps
    from gl_plugins.ggml_types import get_ftype
    from gl_plugins.toolchain.llamacpp import cache_root
    from gl_plugins.plan.resolve import stock_plan
    from gl_plugins.quantize.run import quantize as run
    from gl_plugins.validate.run import validate_file

    quant = get_ftype(quant)
    as_json = fmt == "json"
    from gl_plugins.toolchain.samples import local_model

    model_path = local_model(model).resolve()
    facts = facts_from_gguf(model_path)
    options = _settings(settings)
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    with tempfile.TemporaryDirectory(dir=_work_dir(cache_root()), prefix="experiment-") as tmp:
        target = Path(out) if out else Path(tmp) / f"{model_path.stem}-{quant}.gguf"
        run(model_path, target, stock_plan(quant, imatrix=bool(imatrix)), imatrix=imatrix, echo=echo)
        report = validate_file(target, base=model_path, options=options, echo=_progress())
    obs = observation(model_path, facts, quant, report, note)
    if evidence:
        append_evidence(evidence, obs)
    if as_json:
        click.echo(dumps({"observation": obs, "report": report.to_dict()}))
        return
    print_report(report)
    figs = ", ".join(f"{k} {v:g}" for k, v in obs["figures"].items())
    click.echo(f"outcome: {quant} {obs['outcome']} ({figs})")
    if evidence:
        click.echo(f"appended to {evidence}; score predictors with: gl predict --evidence {evidence}")


def _work_dir(root) -> str:
    path = root / "experiments"
    path.mkdir(parents=True, exist_ok=True)
    return os.fspath(path)
