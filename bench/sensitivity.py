"""Fit the sensitivity weights gl ships: KLD per unit of measured tensor error, per tensor class and depth.

For each real sample model (its F16 base, gl's imatrix of it) this measures

- every quantizable tensor's relative error in each type gl plans with
  (``gl plan errors``: ggml's own quantizers on the model's own weights, cached);
- a reference file, every quantizable tensor at Q8_0, and its mean KLD against
  the base on gl's evaluation text (4 x 512 tokens by default);
- a second reference file, every quantizable tensor at Q6_K (Q8_0 where rows are
  not 256 wide), for the compute costs (the price of the activations' 8-bit
  types, see gl_plugins.plan.sensitivity);
- for every group (a tensor class in one third of the layers, or a tensor
  outside them: see gl_plugins.plan.sensitivity) the same file with that group
  alone lowered to ``--low`` (Q2_K; llama.cpp's fallback type where rows are not
  256 wide), and its mean KLD.

A group's weight is its rise in mean KLD over the rise in the summed relative
error of its tensors. With ``--references-only`` only the two reference files are
measured and the compute costs fitted again, the groups kept from the file. The
weights and costs go to src/gl_plugins/data/sensitivity.json,
which ``gl plan --recipe budget --errors measured`` and the ``quant-error``
predictor read. Every file is measured through gl's candidate cache, so a rerun
costs nothing and an interrupted run resumes; the file is rewritten after each
model. The generation check is not run: only the KLD is fitted.

    python bench/sensitivity.py [--model gemma3-270m] [--model qwen2.5-coder-1.5b]
                                [--groups ffn_down@0,output] [--chunks 4] [--low Q2_K] [--out FILE]
                                [--references-only]
    python bench/sensitivity.py --markdown      # the weights file as tables (docs/plan.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gl_plugins.atomic import atomic_write  # noqa: E402
from gl_plugins.digests import digest  # noqa: E402
from gl_plugins.facts import facts_from_gguf  # noqa: E402
from gl_plugins.imatrix.calibrate import make as make_imatrix  # noqa: E402
from gl_plugins.model.tensors import quantizable  # noqa: E402
from gl_plugins.plan.measured import measure_errors  # noqa: E402
from gl_plugins.plan.recipes import CANDIDATES, Choice, build_plan  # noqa: E402
from gl_plugins.plan.sensitivity import DATA, FORMAT, Sensitivities, fit_compute_costs, fit_group, group_of  # noqa: E402,E501
from gl_plugins.toolchain.samples import provision  # noqa: E402
from gl_plugins.validate.candidates import measure  # noqa: E402

MODELS = ("gemma3-270m", "qwen2.5-coder-1.5b")
REFERENCE = "Q8_0"
K_REFERENCE = "Q6_K"  # the compute costs' second file: Q8_K activations wherever rows are 256 wide
VALIDATORS = ("structure", "plan-match", "bpw", "kld")
CTX = 512


def plan_with(facts, tensors, lowered: set[str], low: str, reference: str = REFERENCE):
    """Every tensor at ``reference`` but those in ``lowered``, at ``low`` (fitted to their rows)."""
    choice = Choice()
    for t in tensors:
        choice.set(t, low if t.name in lowered else reference)
    params = {"lowered": sorted(lowered), "low": low}
    if reference != REFERENCE:
        params["reference"] = reference
    return choice, build_plan(facts, choice, recipe="sensitivity", params=params, imatrix=True)


def fit_model(model: str, groups: list[str] | None, chunks: int, low: str, old: dict | None = None) -> dict:
    """The model's entry: its groups' weights (``groups``: those to measure, None every one, [] none
    but the ``old`` entry's) and the compute costs from the two reference files."""
    t0 = time.monotonic()
    base = provision(f"{model}-f16")
    facts = facts_from_gguf(base)
    say = lambda m: print(f"  {m}", file=sys.stderr, flush=True)  # noqa: E731
    imx = make_imatrix(base, echo=say)
    table = measure_errors(base, imatrix=imx, types=[c for c in CANDIDATES if c != "F16"], echo=say)
    tensors = quantizable(facts, llama_order=True)
    members: dict[str, list] = {}
    for t in tensors:
        members.setdefault(group_of(facts, t.name), []).append(t)
    wanted = list(members) if groups is None else groups
    unknown = [g for g in wanted if g not in members]
    if unknown:
        sys.exit(f"{model} has no group {', '.join(unknown)}; its groups: {', '.join(members)}")
    _, ref_plan = plan_with(facts, tensors, set(), low)
    ref = measure(base, ref_plan, label=f"{model} reference {REFERENCE}", imatrix=imx, chunks=chunks, ctx=CTX,
                  validators=VALIDATORS)
    print(f"{model}: reference (every tensor {REFERENCE}) {ref.bpw:.3f} bpw, mean KLD {ref.kld['mean']:.5f}",
          flush=True)
    rows, took, files = {}, [], ref.seconds
    for i, g in enumerate(wanted, 1):
        names = {t.name for t in members[g]}
        choice, plan = plan_with(facts, tensors, names, low)
        start = time.monotonic()
        o = measure(base, plan, label=f"{model} {g} at {low}", imatrix=imx, chunks=chunks, ctx=CTX,
                    validators=VALIDATORS)
        took.append(time.monotonic() - start)
        files += o.seconds  # the file's own measuring time, also when it came from the cache
        ref_err = sum(table.error(n, REFERENCE) for n in names)
        d_err = sum(table.error(n, choice.types[n]) for n in names) - ref_err
        d_kld = o.kld["mean"] - ref.kld["mean"]
        w = fit_group(d_kld, d_err)
        rows[g] = {"weight": float(f"{w:.5g}"), "kld": o.kld["mean"], "delta_kld": round(d_kld, 6),
                   "delta_error": float(f"{d_err:.5g}"), "reference_error": float(f"{ref_err:.5g}"),
                   "tensors": len(names),
                   "types": dict(Counter(choice.types[n] for n in names)), "bpw": round(o.bpw, 4)}
        eta = (len(wanted) - i) * sum(took) / len(took)
        print(f"[{i}/{len(wanted)}] {model} {g:<16} {o.bpw:6.3f} bpw  KLD {o.kld['mean']:.5f} "
              f"(+{d_kld:.5f})  error +{d_err:.4g}  weight {w:.4g}  "
              f"({'cached' if took[-1] < 1 else f'{took[-1]:.0f} s'}; ETA {eta / 60:.0f} min)", flush=True)
    entry = {"model": model, "architecture": facts.architecture, "n_layer": facts.n_layer,
             "base_sha256": digest(base)[0], "imatrix": f"gl-imatrix:{Path(imx).stem}", "low": low,
             "reference": REFERENCE, "reference_kld": ref.kld["mean"], "chunks": chunks, "error_rows": table.rows,
             "seconds": round(time.monotonic() - t0, 1), "seconds_files": round(files, 1), "groups": rows}
    if old is not None and old.get("base_sha256") == entry["base_sha256"] and old.get("low") == low:
        entry["groups"] = {**old["groups"], **rows}
    kchoice, kplan = plan_with(facts, tensors, set(), low, K_REFERENCE)
    kref = measure(base, kplan, label=f"{model} reference {K_REFERENCE}", imatrix=imx, chunks=chunks, ctx=CTX,
                   validators=VALIDATORS)
    kept = old["seconds_files"] if not wanted and old is not None and "seconds_files" in old else files
    entry["seconds_files"] = round(kept + kref.seconds, 1)
    weights = Sensitivities(facts, {"format": FORMAT, "models": [entry]})
    entry["compute"] = fit_compute_costs(weights, table, tensors, {
        REFERENCE: ({t.name: REFERENCE for t in tensors}, ref.kld["mean"]),
        K_REFERENCE: (kchoice.types, kref.kld["mean"])})
    costs = entry["compute"]["cost"]
    print(f"{model}: reference {K_REFERENCE} {kref.bpw:.3f} bpw, mean KLD {kref.kld['mean']:.5f}; compute cost "
          f"per unit of weight: Q8_0 activations {costs.get('Q8_0', 0):.4g}, Q8_K {costs.get('Q8_K', 0):.4g}",
          flush=True)
    entry["seconds"] = round(time.monotonic() - t0, 1)
    return entry


def merge(path: Path, entry: dict, command: str, key: str = "command") -> dict:
    """The data file with ``entry`` in place of that model's (other models kept), and ``command`` as
    what made its ``key``: "command" (the weights) or "compute_command" (the compute costs alone)."""
    doc = json.loads(path.read_text()) if path.exists() else {"format": FORMAT, "models": []}
    doc["models"] = [m for m in doc["models"] if m["model"] != entry["model"]] + [entry]
    doc["models"].sort(key=lambda m: m["model"])
    doc.update({"format": FORMAT, key: command})
    return doc


def markdown(doc: dict) -> str:
    """The fitted weights as a table per model: a row per class, a column per third of the layers."""
    out = []
    for m in doc["models"]:
        groups = m["groups"]
        classes = list(dict.fromkeys(g.split("@")[0] for g in groups if "@" in g))
        out += [f"#### {m['model']} ({m['n_layer']} layers; reference {m['reference']}: mean KLD "
                f"{m['reference_kld']:.5f}; lowered to {m['low']})", "",
                "| class | first third | middle third | last third |", "|---|---|---|---|"]
        for c in classes:
            cells = []
            for i in range(3):
                r = groups.get(f"{c}@{i}")
                cells.append("" if r is None else f"{r['weight']:.3g} (+{r['delta_kld']:.4f} KLD)")
            out.append(f"| {c} | " + " | ".join(cells) + " |")
        for g in (g for g in groups if "@" not in g):
            r = groups[g]
            out.append(f"| {g} | {r['weight']:.3g} (+{r['delta_kld']:.4f} KLD) | | |")
        out += ["", f"{len(groups)} groups and the references: {m['seconds_files'] / 60:.1f} min of quantizing and "
                f"measuring on the 2-core machine.", ""]
        comp = m.get("compute")
        if comp:
            refs, cost = comp["references"], comp["cost"]
            out += ["| activations | cost per unit of weight | reference file | its mean KLD | weights x errors |",
                    "|---|---|---|---|---|"]
            for act, ref in (("Q8_0", REFERENCE), ("Q8_K", K_REFERENCE)):
                if act in cost and ref in refs:
                    r = refs[ref]
                    what = f"every tensor {ref}" + (" (Q8_0 where rows are not 256 wide)" if ref == K_REFERENCE else "")
                    out.append(f"| {act} | {cost[act]:.3g} | {what} | {r['kld']:.5f} | "
                               f"{r['weighted_error']:.5f} |")
            out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=MODELS, help="repeatable; default: both")
    ap.add_argument("--groups", help="comma-separated subset of the groups (default: every group of the model)")
    ap.add_argument("--chunks", type=int, default=4, help="512-token chunks of the evaluation text for KLD")
    ap.add_argument("--low", default="Q2_K", help="the type a group is lowered to (default Q2_K)")
    ap.add_argument("--out", default=str(DATA), help=f"the weights file (default {DATA})")
    ap.add_argument("--references-only", action="store_true",
                    help="measure only the two reference files and fit the compute costs again; keep the groups")
    ap.add_argument("--markdown", action="store_true", help="print the weights of --out as tables; measure nothing")
    a = ap.parse_args(argv)
    if a.markdown:
        print(markdown(json.loads(Path(a.out).read_text())))
        return 0
    groups = [g.strip() for g in a.groups.split(",") if g.strip()] if a.groups else None
    if a.references_only:
        groups = []
    out = Path(a.out)
    command = "python bench/sensitivity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for model in a.model or list(MODELS):
        doc = json.loads(out.read_text()) if out.exists() else {"models": []}
        old = next((m for m in doc["models"] if m["model"] == model), None)
        if a.references_only and old is None:
            sys.exit(f"{out} holds no groups of {model} to keep; run without --references-only first")
        entry = fit_model(model, groups, a.chunks, a.low.upper(), old)
        key = "compute_command" if a.references_only else "command"
        atomic_write(out, json.dumps(merge(out, entry, command.strip(), key), indent=1) + "\n", parents=True)
        print(f"{model}: {len(entry['groups'])} groups in {entry['seconds'] / 60:.1f} min; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
