"""How well the quant-error predictor's mean KLD matches what the frontier measured.

For every file of the quality frontier (bench/results/quality.json: each stock
type and gl's budget plan at its size, on both real sample models) this rebuilds
the file's plan exactly as bench/quality.py made it, predicts its mean KLD
against the F16 base without quantizing (each tensor's error as ggml measures it
on the base's weights, with the imatrix the file was made with, times the
sensitivities of src/gl_plugins/data/sensitivity.json, plus each tensor's compute
cost) and compares it with the
measured mean KLD. The sensitivities are fitted by bench/sensitivity.py on other
files (one tensor group lowered at a time); its compute costs on two reference
files (every tensor at Q8_0, every tensor at Q6_K) that are the stock Q8_0 and
Q6_K files here.

Prints one line per file and the summary: the share of files predicted within
x1.5, Spearman's rank correlation over all files and per model, and how often the
verdict (gl floor's KLD gate, default 0.3) is right, judged on the KLD alone and
on gl floor's gates (KLD and generation loops). Writes the summary to
src/gl_plugins/data/quant_error_accuracy.json, which the predictor prints with
its verdicts.

    python bench/quant_error_accuracy.py [--rows bench/results/quality.json] [--model M] [--gate 0.3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from quality import candidates, load_rows, row_key  # noqa: E402

from gl_plugins.atomic import atomic_write  # noqa: E402
from gl_plugins.facts import facts_from_gguf  # noqa: E402
from gl_plugins.model.tensors import quantizable  # noqa: E402
from gl_plugins.plan.measured import measure_errors  # noqa: E402
from gl_plugins.plan.resolve import resolve  # noqa: E402
from gl_plugins.plan.sensitivity import Sensitivities, estimate_plan  # noqa: E402
from gl_plugins.predict.quant_error import ACCURACY, BAND, DEFAULT_GATE, verdict_for  # noqa: E402
from gl_plugins.predict.evidence import predicted_outcome  # noqa: E402

MAX_LOOPS = 0.5  # gl floor's default --max-loops


def ranks(x) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def predict_rows(model: str, rows: list[dict]) -> list[dict]:
    base, cands = candidates(model, sorted({r["type"] for r in rows if r["model"] == model}), ("stock", "budget"))
    facts = facts_from_gguf(base)
    weights = Sensitivities(facts)
    names = {t.name for t in quantizable(facts)}
    by_key = {r["key"]: r for r in rows if r["model"] == model}
    tables: dict = {}
    out = []
    for kind, t, plan, imx, _ in cands:
        row = by_key.get(row_key(base, plan, imx, 4))
        if row is None:
            continue
        needed = sorted({a.type for a in resolve(plan, facts).assignments if a.name in names})
        k = (str(imx), tuple(needed))
        if k not in tables:
            tables[k] = measure_errors(base, imatrix=imx, types=needed, facts=facts,
                                       echo=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        est, missing = estimate_plan(weights, tables[k], facts, plan)
        if est is None:
            print(f"{model} {kind} {t}: no error figure for {len(missing)} tensors; left out", file=sys.stderr)
            continue
        out.append({"model": model, "kind": kind, "type": t, "bpw": row["bpw"], "measured": row["kld"]["mean"],
                    "predicted": round(est, 6), "loops": row["loops"]})
    return out


def summary(rows: list[dict], gate: float) -> dict:
    for r in rows:
        r["ratio"] = r["predicted"] / r["measured"] if r["measured"] > 0 else float("inf")
        r["verdict"] = verdict_for(r["predicted"], gate)
        said = predicted_outcome(r["verdict"])
        r["right_kld"] = said == ("works" if r["measured"] <= gate else "fails")
        passes = r["measured"] <= gate and (r["loops"] is None or r["loops"] <= MAX_LOOPS)
        r["right_gates"] = said == ("works" if passes else "fails")
    within = [1 / BAND <= r["ratio"] <= BAND for r in rows]
    per_model = {m: spearman([r["predicted"] for r in rows if r["model"] == m],
                             [r["measured"] for r in rows if r["model"] == m])
                 for m in dict.fromkeys(r["model"] for r in rows)}
    return {"files": len(rows), "models": list(per_model), "band": BAND, "gate": gate,
            "within_band": sum(within) / len(rows),
            "spearman": spearman([r["predicted"] for r in rows], [r["measured"] for r in rows]),
            "spearman_per_model": per_model,
            "verdict_right": sum(r["right_kld"] for r in rows) / len(rows),
            "verdict_right_with_loops": sum(r["right_gates"] for r in rows) / len(rows),
            "command": "python bench/quant_error_accuracy.py", "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=str(ROOT / "bench" / "results" / "quality.json"), help="the frontier's rows")
    ap.add_argument("--model", action="append", help="only this model's files (repeatable; default: every model)")
    ap.add_argument("--gate", type=float, default=DEFAULT_GATE, help="the mean-KLD gate of the verdict")
    ap.add_argument("--out", default=str(ACCURACY), help=f"the summary file (default {ACCURACY})")
    a = ap.parse_args(argv)
    rows = load_rows(a.rows)
    if not rows:
        sys.exit(f"{a.rows}: no frontier rows; run bench/quality.py --json {a.rows} first")
    got = []
    for model in dict.fromkeys(r["model"] for r in rows):
        if not a.model or model in a.model:
            got += predict_rows(model, rows)
    doc = summary(got, a.gate)
    print(f"{'model':<20}{'kind':<8}{'type':<9}{'bpw':>7}{'measured':>10}{'predicted':>11}{'ratio':>7}  verdict")
    for r in got:
        mark = "" if r["right_kld"] else "  (wrong)"
        print(f"{r['model']:<20}{r['kind']:<8}{r['type']:<9}{r['bpw']:>7.3f}{r['measured']:>10.4f}"
              f"{r['predicted']:>11.4f}{r['ratio']:>7.2f}  {r['verdict']}{mark}")
    print(f"\n{doc['files']} files: predicted within x{BAND:g} for {doc['within_band']:.0%}; Spearman "
          f"{doc['spearman']:.3f} (" + ", ".join(f"{m} {v:.3f}" for m, v in doc["spearman_per_model"].items())
          + f"); verdict right {doc['verdict_right']:.0%} on the KLD gate {a.gate:g}, "
          f"{doc['verdict_right_with_loops']:.0%} on gl floor's gates with loops")
    atomic_write(a.out, json.dumps(doc, indent=1) + "\n", parents=True)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
