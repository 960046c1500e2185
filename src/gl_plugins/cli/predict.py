import click

from gl_plugins.cli.options import model_input, output_format


def _quants(values) -> list[str]:
    from gl_plugins.ggml_types import get_ftype

    out = []
    for v in values:
        q = get_ftype(v)
        if q not in out:
            out.append(q)
    return out


class PredictCommand(click.Command):
    """``gl predict`` with the options the loaded predictors declare (``--band`` of ffn-ratio …)."""

    def parse_args(self, ctx, args):
        from gl_plugins import host
        from gl_plugins.cli.plugin_options import with_options_of

        if not hasattr(self, "_own_params"):
            self._own_params = list(self.params)
        self.params, ctx.meta["gl.predict.owners"] = with_options_of(
            self._own_params, host.collect("gl_register_predictors").values(), skip_failing=True)
        return super().parse_args(ctx, args)


@click.command("predict", cls=PredictCommand)
@model_input(required=False)
@click.option("--quant", "-q", "quant_names", multiple=True, metavar="TYPE",
              help="A llama-quantize type (Q2_K, IQ2_M, Q3_K_S …), case-insensitive. Repeatable.")
@output_format()
@click.option("--explain", is_flag=True, help="Also show each predictor's description and the figures behind it.")
@click.option("--fail-on", type=click.Choice(["fails", "risky"]),
              help="Exit 1 when a combined verdict is this bad (risky also catches fails).")
@click.option("--evidence", "evidence_source", metavar="FILE|builtin",
              help="Score every predictor on recorded outcomes (JSON Lines); 'builtin' = gl's own, per source: "
                   "the lab observations (builtin:lab) and gl's measurements of its sample models "
                   "(builtin:measured).")
@click.option("--max-kld", type=click.FloatRange(min=0), metavar="X",
              help="With --evidence: an observation works when its measured mean KLD is at most X "
                   "(observations without KLD figures are left out).")
@click.option("--max-loops", type=click.FloatRange(0, 1), metavar="SHARE",
              help="With --evidence: ... and when at most this share of generation prompts looped.")
def predict(model, quant_names, fmt, explain, fail_on, evidence_source, max_kld, max_loops, **predictor_options):
    """Predict whether MODEL survives each --quant type, predictor by predictor.

    MODEL is a GGUF, a config.json (or its folder), a Hugging Face repo id
    (hf:org/name) or pkg:gemma3-270m. Each predictor gives ok / risky / fails /
    unknown with a confidence and its reasons; a combined verdict per type
    follows, and the rule that combines them is printed with it.

    Exit status: 0; 1 when --fail-on is met or a predictor (or plugin) failed;
    2 for bad input.
    """
    from gl_plugins import host
    from gl_plugins.cli.plugin_options import given
    from gl_plugins.findings import dumps

    if (max_kld is not None or max_loops is not None) and not evidence_source:
        raise click.UsageError("--max-kld and --max-loops judge evidence; give --evidence FILE|builtin")
    if not model and not evidence_source:
        raise click.UsageError("give a MODEL and --quant TYPE, or --evidence FILE|builtin")
    if model and not quant_names:
        raise click.UsageError("give at least one --quant TYPE (e.g. --quant Q2_K)")
    if quant_names and not model:
        raise click.UsageError("--quant needs a MODEL")
    quants = _quants(quant_names)

    as_json = fmt == "json"
    predictors = host.collect("gl_register_predictors")
    failed = [str(p) for p in host.problems if p.hook in (None, "gl_register_predictors")]
    owners = click.get_current_context().meta.get("gl.predict.owners", {})
    bound: dict[str, dict] = {}
    for param, value in given(predictor_options).items():
        bound.setdefault(owners[param], {})[param] = value
    chosen = [p.with_options(**bound.get(n, {})) for n, p in predictors.items()]

    doc: dict = {}
    if model:
        from gl_plugins.facts import load_facts
        from gl_plugins.predict.predictions import run

        facts = load_facts(model)
        predictions, failures = run(chosen, facts, quants)
        for f in failures:
            click.echo(f"gl: error: {f}; its verdict is left out", err=True)
            failed.append(str(f))
        if as_json:
            doc["predictions"] = _json_predictions(predictions, failures, explain)
        else:
            descriptions = {n: host.description(p) for n, p in predictors.items()}
            click.echo(_render_predictions(facts, quants, predictions, failures, explain, descriptions))
    if evidence_source:
        from gl_plugins.predict.evidence import Gates, by_source, judged, read_evidence, score, source_label
        from gl_plugins.predict.predictions import Combined

        gates = Gates(max_kld, max_loops)
        observations, left_out = judged(read_evidence(evidence_source), gates)
        sources = by_source(observations) or {evidence_source: []}
        scored = {src: score(chosen + [Combined(chosen)], obs) for src, obs in sources.items()}
        for src, scores in scored.items():
            for s in scores.values():
                for d in s.details:
                    if d["result"] == "error":
                        where = f"line {d['line']}" + (f" of {src}" if len(scored) > 1 else "")
                        msg = f"predictor {s.predictor!r} failed on evidence {where}: {d['error']}"
                        click.echo(f"gl: error: {msg}", err=True)
                        failed.append(msg)
        if as_json:
            doc.update({"evidence": evidence_source, "observations": len(observations),
                        "sources": [{"source": src, "label": source_label(src), "observations": len(sources[src]),
                                     "scores": [_score_dict(s, explain) for s in scores.values()]}
                                    for src, scores in scored.items()]})
            together = scored[next(iter(scored))] if len(scored) == 1 else score(chosen + [Combined(chosen)],
                                                                                 observations)
            doc["scores"] = [_score_dict(s, explain) for s in together.values()]  # every source together
            if gates:
                doc.update({"judged_by": gates.describe(), "left_out": left_out})
        else:
            if model:
                click.echo("")
            click.echo("\n\n".join(_render_scores(src, sources[src], scores, explain) for src, scores in scored.items()))
            if gates:
                click.echo(f"outcomes judged by the measured figures: {gates.describe()}; "
                           f"{left_out} observation(s) without those figures left out.")
    if as_json:
        click.echo(dumps(doc["predictions"] if list(doc) == ["predictions"] else doc))

    status = 0
    if model and fail_on:
        bad = ("fails",) if fail_on == "fails" else ("fails", "risky")
        hits = [p for p in predictions if p.predictor == "combined" and p.verdict in bad]
        for p in hits:
            click.echo(f"gl: --fail-on {fail_on}: the combined verdict for {p.quant} is {p.verdict}", err=True)
        status = 1 if hits else 0
    if failed:
        click.echo(f"gl: {len(failed)} predictor or plugin failure(s); the results above are incomplete", err=True)
        status = 1
    click.get_current_context().exit(status)


# ---------------------------------------------------------------- rendering

def _json_predictions(predictions, failures, explain) -> list[dict]:
    out = [p.to_dict(with_evidence=explain) for p in predictions]
    for f in failures:
        out.append({"predictor": f.predictor, "quant": f.quant, "verdict": "unknown", "confidence": 0.0,
                    "reasons": [f"the predictor raised: {f.error}"], "error": f.error, "plugin": f.plugin})
    return out


def _score_dict(s, explain) -> dict:
    d = s.to_dict()
    if not explain:
        d.pop("details")
    return d


def _render_predictions(facts, quants, predictions, failures, explain, descriptions) -> str:
    import json

    from gl_plugins.predict.predictions import COMBINE_RULE

    title = facts.name or facts.source
    lines = [f"{title}  ({facts.kind}: {facts.source})"]
    by_quant: dict = {}
    for p in predictions:
        by_quant.setdefault(p.quant, []).append(p)
    for quant in quants:
        lines.append("")
        lines.append(quant)
        for p in by_quant.get(quant, []):
            if p.predictor == "combined":
                continue
            lines.append(f"  {p.predictor:<16} {p.verdict:<7} confidence {p.confidence:.2f}")
            lines += [f"      - {r}" for r in p.reasons]
            if explain:
                desc = str(descriptions.get(p.predictor) or "").strip()
                if desc:
                    lines.append(f"      about: {desc}")
                for key, value in p.evidence.items():
                    text = json.dumps(value, default=str)
                    lines.append(f"      {key}: {text}")
        for f in failures:
            if f.quant == quant:
                lines.append(f"  {f.predictor:<16} FAILED  {f.error}"
                             + (f" (plugin {f.plugin})" if f.plugin else ""))
        combined = next(p for p in by_quant[quant] if p.predictor == "combined")
        decided = combined.reasons[1] if len(combined.reasons) > 1 else ""
        lines.append(f"  {'combined':<16} {combined.verdict:<7} confidence {combined.confidence:.2f}  ({decided})")
    lines.append("")
    lines.append(f"combined verdict: {COMBINE_RULE}.")
    return "\n".join(lines)


def _render_scores(source, observations, scores, explain) -> str:
    from gl_plugins.predict.evidence import source_label

    lines = [f"Evidence: {len(observations)} observations ({source_label(source)})",
             f"  {'predictor':<16} {'right':>5} {'wrong':>5} {'abstained':>9} {'raised':>6}"]
    for s in scores.values():
        lines.append(f"  {s.predictor:<16} {s.right:>5} {s.wrong:>5} {s.abstained:>9} {s.errors:>6}")
        if explain:
            for d in s.details:
                verdict = d["verdict"] or "-"
                lines.append(f"      line {d['line']}: {d['model']} {d['quant']} {d['outcome']}: "
                             f"predicted {verdict} -> {d['result']}" + (f" ({d['error']})" if d.get("error") else ""))
    lines.append("fails and risky count as predicting \"fails\", ok as \"works\", unknown as abstaining.")
    return "\n".join(lines)
