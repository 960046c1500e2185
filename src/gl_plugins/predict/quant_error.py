"""quant-error: the mean KLD a quant type will have, predicted from errors measured on the model's weights.

For a GGUF whose tensor data is at hand, the predictor replays a plain
``llama-quantize IN OUT QUANT`` on the model's tensors (the stock mixture,
:func:`gl_plugins.plan.resolve`), takes every tensor's relative error in the
type it gets as ggml measures it on the model's own rows (``gl plan errors``,
with the imatrix the file would be made with; cached), and sums them with the
sensitivities fitted on gl's sample models (:mod:`gl_plugins.plan.sensitivity`).
The sum estimates the file's mean KL divergence against the model, without
quantizing. The verdict applies gl floor's KLD gate (``--kld-gate``, default
0.3): ok at or below it, risky above it by up to the predictor's measured
error band (x1.5), fails beyond. It judges the KLD only, never generation
loops. Its accuracy on the frontier files of both sample models
(``bench/quant_error_accuracy.py``) is printed with every verdict.

Measuring the errors takes minutes the first time for a model (seconds after),
so the predictor measures only with ``--measure-errors``; without it, it uses
errors already cached and otherwise says it cannot judge.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import lru_cache
from pathlib import Path

import click

from gl_plugins.errors import GLError
from gl_plugins.hookspecs import hookimpl
from gl_plugins.predict.predictions import Prediction

DEFAULT_GATE = 0.3  # gl floor's default --max-kld
BAND = 1.5  # the accuracy the predictor is measured against: within x1.5 of the measured mean KLD
ACCURACY = Path(__file__).resolve().parents[1] / "data" / "quant_error_accuracy.json"
CALIBRATION_IMATRIX = "gl"


@lru_cache(maxsize=1)
def accuracy() -> dict | None:
    """What bench/quant_error_accuracy.py measured on the frontier files (None before it has run)."""
    return json.loads(ACCURACY.read_text()) if ACCURACY.exists() else None


def accuracy_sentence(acc: dict | None) -> str:
    if not acc:
        return "accuracy not measured yet (bench/quant_error_accuracy.py)"
    return (f"measured on gl's {acc['files']} frontier files of {', '.join(acc['models'])}: predicted mean KLD "
            f"within x{acc['band']:g} of the measured for {acc['within_band']:.0%}, Spearman rank correlation "
            f"{acc['spearman']:.3f}, verdict right on {acc['verdict_right']:.0%} (KLD gate {acc['gate']:g})")


@lru_cache(maxsize=8)
def _facts(path: str, size: int, mtime: float):
    from gl_plugins.facts import facts_from_gguf

    return facts_from_gguf(path)


def verdict_for(predicted: float, gate: float) -> str:
    """ok at or below the gate, risky above it by up to x1.5 (the accuracy band), fails beyond."""
    if predicted <= gate:
        return "ok"
    return "risky" if predicted <= gate * BAND else "fails"


def predicted_kld(model, quant: str, imatrix=None, measure: bool = True, echo=None) -> dict:
    """The estimate for stock ``quant`` of the GGUF ``model`` (path or pkg:NAME): ``predicted_kld``, the
    types, and where the figures come from. GLError when it cannot be made (see the reasons)."""
    from gl_plugins.model.tensors import quantizable
    from gl_plugins.plan.measured import measure_errors
    from gl_plugins.plan.resolve import resolve, stock_plan
    from gl_plugins.plan.sensitivity import Sensitivities, estimate_plan
    from gl_plugins.predict.shape_fallback import needs_imatrix
    from gl_plugins.toolchain.samples import local_model

    path = local_model(model)
    st = path.stat()
    facts = _facts(os.fspath(path), st.st_size, st.st_mtime)
    if needs_imatrix(quant) and imatrix is None:
        raise GLError(f"llama-quantize makes {quant} only with an imatrix; give --imatrix FILE (or 'gl')")
    plan = stock_plan(quant, imatrix=imatrix is not None)
    res = resolve(plan, facts)
    types = {a.name: a.type for a in res.assignments}
    tensors = quantizable(facts)
    wanted = sorted({types[t.name] for t in tensors})
    table = measure_errors(path, imatrix=imatrix, types=wanted, echo=echo, cached_only=not measure, facts=facts)
    if table is None:
        raise GLError(f"{path.name}: its tensor errors are not measured yet; give --measure-errors "
                      f"(minutes the first time, cached after)")
    weights = Sensitivities(facts)
    est, missing = estimate_plan(weights, table, facts, plan)
    if est is None:
        raise GLError(f"ggml measured no error for {len(missing)} tensors in their {quant} types "
                      f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})")
    fitted = sum(1 for t in tensors if weights.weight(t.name).fitted)
    return {"predicted_kld": est, "bpw": res.bpw, "types": dict(sorted(Counter(types[t.name] for t in tensors).items())),
            "tensors": len(tensors), "fitted_weights": fitted, "weights": weights.describe(),
            "imatrix": os.fspath(imatrix) if imatrix is not None else None, "rows": table.rows}


def _imatrix_option(ctx, param, value):
    if value is None or value == CALIBRATION_IMATRIX:
        return value
    if not Path(value).is_file():
        raise click.BadParameter(f"{value}: no such importance matrix (a file, or '{CALIBRATION_IMATRIX}' for gl's "
                                 f"calibration imatrix of the model)")
    return value


class QuantError:
    name = "quant-error"
    description = ("The mean KLD of the quant type predicted without quantizing: each tensor's error as ggml "
                   "measures it on the model's own weights, times sensitivities fitted on gl's sample models; "
                   "judged by gl floor's KLD gate. Needs a GGUF with tensor data.")

    def __init__(self, gate: float = DEFAULT_GATE, imatrix: str | None = None, measure: bool = False):
        self.gate, self.imatrix, self.measure = gate, imatrix, measure

    @property
    def options(self):
        return [
            click.Option(["--kld-gate"], type=click.FloatRange(min=0, min_open=True), metavar="X",
                         help=f"quant-error: the highest mean KLD that passes (default {DEFAULT_GATE:g}, "
                              f"gl floor's --max-kld)."),
            click.Option(["--imatrix", "error_imatrix"], callback=_imatrix_option, metavar="FILE|gl",
                         help="quant-error: the importance matrix the file would be made with ('gl': gl's "
                              "calibration imatrix of the model, made if missing)."),
            click.Option(["--measure-errors"], is_flag=True, default=None,
                         help="quant-error: measure the model's tensor errors with ggml when they are not "
                              "cached (minutes the first time)."),
        ]

    def predict(self, facts, quant: str, kld_gate: float | None = None, error_imatrix: str | None = None,
                measure_errors: bool | None = None) -> Prediction:
        gate = kld_gate or self.gate
        imx = error_imatrix or self.imatrix
        measure = self.measure if measure_errors is None else measure_errors

        def unknown(reason):
            return Prediction(self.name, quant, "unknown", 0.0, [reason])

        if facts.kind != "gguf" or not facts.source:
            return unknown("needs the model's tensor data (a GGUF file or pkg:NAME); "
                           f"{'a config' if facts.kind == 'config' else 'these facts'} hold none")
        note = None
        if facts.file_type and str(facts.file_type).upper() not in ("F32", "F16", "BF16"):
            note = (f"the model is itself {facts.file_type}: errors are measured on its dequantized weights, "
                    f"so the prediction is relative to it")
        try:
            if imx == CALIBRATION_IMATRIX:
                if not measure:
                    return unknown("gl's calibration imatrix is made only with --measure-errors")
                from gl_plugins.imatrix.calibrate import make
                from gl_plugins.toolchain.samples import local_model

                imx = make(local_model(facts.source))
            got = predicted_kld(facts.source, quant, imatrix=imx, measure=measure,
                                echo=lambda m: click.echo(f"gl: {m}", err=True))
        except GLError as e:
            return unknown(str(e))
        est = got["predicted_kld"]
        verdict = verdict_for(est, gate)
        acc = accuracy()
        near = gate / BAND < est <= gate * BAND
        confidence = 0.5 if near or not acc else acc["within_band"]
        fitted = got["fitted_weights"]
        reasons = [f"predicted mean KLD {est:.4g} against the model at {got['bpw']:.2f} bpw "
                   f"({'at or below' if verdict == 'ok' else 'above'} the gate {gate:g})",
                   f"{got['tensors']} tensors, errors measured by ggml on {got['rows']} rows each"
                   + (f" weighted by {Path(got['imatrix']).name}" if got["imatrix"] else ", no imatrix")
                   + f"; {fitted} weights fitted ({got['weights'].get('fitted')}), "
                     f"{got['tensors'] - fitted} role priors x {got['weights'].get('prior_scale', 1):.3g}",
                   accuracy_sentence(acc),
                   "confidence " + ("0.5: no measured accuracy" if not acc else
                                    f"0.5: the prediction lies within x{BAND:g} of the gate" if near else
                                    f"{confidence:.2f}: the share of frontier files predicted within x{BAND:g}"),
                   "judges the KLD only: generation loops can fail a file it calls ok"]
        if note:
            reasons.insert(1, note)
        evidence = {"predicted_kld": round(est, 6), "gate": gate, **got, "accuracy": acc and {
            k: acc[k] for k in ("files", "band", "within_band", "spearman", "verdict_right", "gate")}}
        return Prediction(self.name, quant, verdict, confidence, reasons, evidence,
                          figures={"predicted_kld": round(est, 6)})


@hookimpl(trylast=True)
def gl_register_predictors(register):
    register(QuantError())
