"""The quality frontier: KL divergence against size, llama.cpp's stock types against gl's budget plans.

For each real sample model (its F16 base, provisioned by gl) and each stock
llama-quantize type, this measures

- the stock file (``llama-quantize BASE OUT TYPE``), with gl's imatrix of the
  base wherever llama.cpp's documentation advises one (tools/quantize/README.md:
  quantization loss "can be minimized by using a suitable imatrix file"; so every
  type below Q8_0, whose quantizer ignores importance data);
- gl's ``budget`` plan at exactly that file's bits per weight, with the same imatrix
  at every size (at Q8_0's too: the types a plan mixes there, Q4_1 or Q6_K, use it,
  and the stock Q8_0 file is the same with it or without);
- with ``--kinds stock,budget,measured``, also ``budget --errors measured`` at that
  bpw: errors measured by ggml on the base's own weights (``gl plan errors``), and
  llama.cpp's mixture of nearest size kept where it estimates lower.

Each file is validated against the base through gl's candidate measurement
(gl_plugins.validate.candidates): mean/median/p99/p99.9 KLD, same-top-p, RMS Δp and
the PPL ratio on the evaluation text, and the generation-loop check (the share of
gl's generation prompts that collapse). The imatrix comes from gl's calibration text,
a slice of pydoc_data.topics disjoint from the evaluation text
(gl_plugins.toolchain.texts). Outcomes are cached by (base, plan, imatrix, settings),
so a second run reuses what is measured and an interrupted run resumes. The rows file
of --json is itself a record that resumes: it is rewritten after every candidate, and
a run given an existing file measures only the candidates it does not hold (the
imatrix counted by how gl made it), so a frontier can be measured over several runs
and machines.

Prints one line per candidate as it goes (with an ETA), then a table per model with the
gl/stock mean-KLD ratio of each of gl's plans at each size.

    python bench/quality.py [--model gemma3-270m] [--model qwen2.5-coder-1.5b] [--types Q2_K,Q4_K_M]
                            [--chunks 4] [--kinds stock,budget,measured] [--json OUT] [--plot OUT.png]
    python bench/quality.py --from-json OUT [--plot OUT.png] [--markdown]   # table and plot of an earlier run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gl_plugins.atomic import atomic_write  # noqa: E402
from gl_plugins.facts import facts_from_gguf  # noqa: E402
from gl_plugins.imatrix.calibrate import make as make_imatrix  # noqa: E402
from gl_plugins.plan.resolve import resolve, stock_plan  # noqa: E402
from gl_plugins.plan.sources import plan_from_recipe  # noqa: E402
from gl_plugins.toolchain.samples import provision  # noqa: E402
from gl_plugins.validate.candidates import COLLAPSE_CODES, RUN_FAILURES, cache_key, measure  # noqa: E402

MODELS = ("gemma3-270m", "qwen2.5-coder-1.5b")
STOCK_TYPES = ("Q2_K", "Q2_K_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_S", "IQ3_M", "Q3_K_S",
               "Q3_K_M", "Q3_K_L", "IQ4_XS", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
# stock: llama-quantize's own mixture; budget: gl's budget recipe as it plans by default (the error
# table); measured: budget --errors measured (errors measured by ggml on the base's own weights, and
# llama.cpp's mixture of nearest size kept where it estimates lower)
KINDS = ("stock", "budget", "measured")
DEFAULT_KINDS = ("stock", "budget")
BUDGET_OPTIONS = {"budget": {}, "measured": {"errors": "measured"}}
CTX = 512  # tokens per KLD chunk


def collapsed(row: dict) -> bool:
    return any(c in row["errors"] for c in COLLAPSE_CODES)


def imatrix_advised(ftype: str) -> bool:
    """Whether the stock type gets the imatrix (see the module docstring)."""
    return ftype != "Q8_0"


def candidates(model: str, types, kinds):
    """(kind, type, plan, imatrix, target bpw) in order of size, gl's plans right after their stock file;
    gl's plans are made with the imatrix at every size (see the module docstring)."""
    base = provision(f"{model}-f16")
    facts = facts_from_gguf(base)
    imx = make_imatrix(base, echo=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    rows = []
    for t in types:
        use = imx if imatrix_advised(t) else None
        stock = stock_plan(t, imatrix=use is not None)
        bpw = resolve(stock, facts).bpw
        if "stock" in kinds:
            rows.append(("stock", t, stock, use, bpw))
        for kind in (k for k in KINDS if k in kinds and k in BUDGET_OPTIONS):
            options = {"target_bpw": bpw, **BUDGET_OPTIONS[kind]}
            rows.append((kind, t, plan_from_recipe(facts, "budget", options, imatrix=imx), imx, bpw))
    rows.sort(key=lambda r: (r[4], r[0] != "stock"))
    return base, rows


def row_key(base, plan, imx, chunks: int) -> str:
    """A candidate's identity in the rows file: the candidate cache's key, with the imatrix named by
    how gl made it (its cache name: base, calibration text, chunks, llama.cpp build), so rows measured
    on another machine or in an earlier run are recognised."""
    return cache_key(base, plan, imx, chunks, CTX, imatrix_id=f"gl-imatrix:{Path(imx).stem}" if imx else None)


def load_rows(path: str | None) -> list[dict]:
    if not path or not Path(path).exists():
        return []
    try:
        rows = json.loads(Path(path).read_text())
    except ValueError as e:
        sys.exit(f"{path}: not the JSON rows of an earlier run ({e}); move it away or pass another --json")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        sys.exit(f"{path}: not the JSON rows of an earlier run (expected a list of objects)")
    return rows


def run(models, types, kinds, chunks: int, json_out: str | None = None) -> list[dict]:
    """Measure every candidate and return its rows. With ``json_out``, rows already there for the same
    candidate are taken as measured, and the file is rewritten (atomically) after every candidate, so
    an interrupted run keeps what it measured and the next one goes on from there."""
    kept = load_rows(json_out)
    # a row in which a llama.cpp run stopped (a timed-out generation) is measured again
    known = {r.get("key"): r for r in kept if r.get("key") and not set(r.get("errors") or ()) & set(RUN_FAILURES)}
    out = []
    plans = [(m, *candidates(m, types, kinds)) for m in models]
    total = sum(len(rows) for _, _, rows in plans)
    done, t0 = 0, time.monotonic()
    for model, base, rows in plans:
        for kind, t, plan, imx, target in rows:
            label = f"{model} {kind} {t}" + (f" @ {target:.3f}" if kind != "stock" else "")
            key = row_key(base, plan, imx, chunks)
            done += 1
            if key in known:
                out.append(known[key])
                print(f"[{done}/{total}] {label:<44} in {json_out}", flush=True)
                continue
            start = time.monotonic()
            o = measure(base, plan, label=label, imatrix=imx, chunks=chunks, ctx=CTX)
            took = time.monotonic() - start
            measured = [r for r in out if r["seconds_run"] > 1]
            eta = (total - done) * (sum(r["seconds_run"] for r in measured) / len(measured)) if measured else 0
            k = o.kld
            loops = "-" if o.loops is None else f"{o.loops:.2f}"
            print(f"[{done}/{total}] {label:<44} {o.bpw:6.3f} bpw  KLD {k.get('mean', float('nan')):.4f} "
                  f"p99 {k.get('p99', float('nan')):.3f}  loops {loops}  "
                  f"({'cached' if took < 1 else f'{took:.0f} s'}; ETA {eta / 60:.0f} min)", flush=True)
            out.append({"model": model, "kind": kind, "type": t, "bpw": round(o.bpw, 4), "bytes": o.bytes,
                        "kld": k, "loops": o.loops, "imatrix": imx is not None, "errors": o.errors,
                        "collapses": o.collapsed,
                        "seconds_run": round(took, 1), "seconds": o.seconds, "key": key})
            if json_out:
                save(json_out, merged(kept, out))
    print(f"\n{total} candidates in {(time.monotonic() - t0) / 60:.1f} min", flush=True)
    return out


def merged(kept: list[dict], out: list[dict]) -> list[dict]:
    """The rows file after a run: the earlier rows this run did not supersede, then this run's. A row
    of the same model, kind and type as one of this run's (a plan that changed since, other chunks)
    is superseded, so the file holds one row per candidate."""
    mine = {r["key"] for r in out} | {(r["model"], r["kind"], r["type"]) for r in out}
    return [r for r in kept if r.get("key") not in mine and (r.get("model"), r.get("kind"), r.get("type")) not in mine] + out


def save(path: str, rows: list[dict]) -> None:
    atomic_write(path, json.dumps(rows, indent=1) + "\n", parents=True)


def by_model(rows: list[dict]):
    """(model, kinds present, types in order of the stock file's size, {(kind, type): row}) per model."""
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        by = {(r["kind"], r["type"]): r for r in mine}
        kinds = [k for k in KINDS if any(r["kind"] == k for r in mine)]
        size = {t: (by.get(("stock", t)) or r)["bpw"] for r in mine for t in [r["type"]]}
        yield model, kinds, sorted(size, key=size.get), by


def ratio(r: dict | None, stock: dict | None) -> float | None:
    """gl's plan's mean KLD over the stock file's at the same size."""
    return r["kld"]["mean"] / stock["kld"]["mean"] if r and stock and stock["kld"]["mean"] > 0 else None


def table(rows: list[dict]) -> str:
    """Per model: each stock type's file, and each of gl's plans at its size with the gl/stock mean-KLD ratio."""
    lines = []
    for model, kinds, types, by in by_model(rows):
        lines += [f"\n{model} (mean KLD against the F16 base; loops: share of generation prompts that collapse, "
                  f"* where the generation check fails the file)",
                  f"{'type':<9}" + "  ".join(f"{k + ' bpw':>11}{k + ' KLD':>13}{'p99':>8}{'loops':>7}"
                                            + (f"{'ratio':>7}" if k != "stock" else "") for k in kinds)]
        for t in types:
            s = by.get(("stock", t))

            def cols(r, kind):
                x = ratio(r, s)
                shown = "" if kind == "stock" else f"{x:>7.2f}" if x is not None else f"{'':>7}"
                if r is None:
                    return f"{'':>11}{'':>13}{'':>8}{'':>7}{shown}"
                loops = ("-" if r["loops"] is None else f"{r['loops']:.2f}") + ("*" if collapsed(r) else " ")
                return f"{r['bpw']:>11.3f}{r['kld']['mean']:>13.4f}{r['kld']['p99']:>8.3f}{loops:>7}{shown}"

            lines.append(f"{t:<9}" + "  ".join(cols(by.get((k, t)), k) for k in kinds))
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The same rows as markdown tables, one per model, as docs/plan.md shows them: for every kind its bpw,
    mean and p99 KLD, same-top-p and loops (✗ where the generation check fails the file), and for gl's plans
    the ratio to the stock file; "imatrix" says whether the stock file was made with one (gl's plans are,
    at every size)."""
    out = []
    for model, kinds, types, by in by_model(rows):
        head = ["stock type", "stock imatrix"]
        for k in kinds:
            head += [f"{k} bpw", f"{k} mean KLD", "p99", "same top", "loops"] + (["ratio"] if k != "stock" else [])
        out += [f"#### {model}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in types:
            s = by.get(("stock", t))
            cells = [t, "yes" if (s or {}).get("imatrix") else "no"]
            for k in kinds:
                r = by.get((k, t))
                if r is None:
                    cells += [""] * (5 if k == "stock" else 6)
                    continue
                loops = "-" if r["loops"] is None else f"{r['loops']:.2f}"
                cells += [f"{r['bpw']:.3f}", f"{r['kld']['mean']:.4f}", f"{r['kld']['p99']:.3f}",
                          f"{100 * r['kld']['same_top_p']:.1f} %", loops + (" ✗" if collapsed(r) else "")]
                if k != "stock":
                    x = ratio(r, s)
                    cells.append("" if x is None else f"{x:.2f}")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5), squeeze=False)
    styles = {"stock": ("tab:blue", "o", "llama.cpp stock type"), "budget": ("tab:orange", "s", "gl budget plan"),
              "measured": ("tab:green", "^", "gl budget, measured errors")}
    for ax, model in zip(axes[0], models):
        for kind, (color, marker, label) in styles.items():
            pts = sorted((r for r in rows if r["model"] == model and r["kind"] == kind and r["kld"]),
                         key=lambda r: r["bpw"])
            if not pts:
                continue
            ax.plot([r["bpw"] for r in pts], [r["kld"]["mean"] for r in pts], color=color, marker=marker,
                    label=label, linewidth=1.2, markersize=5)
            bad = [r for r in pts if collapsed(r)]
            if bad:
                ax.scatter([r["bpw"] for r in bad], [r["kld"]["mean"] for r in bad], s=140, facecolors="none",
                           edgecolors="red", linewidths=1.5, zorder=5, label=f"{kind}: generation check fails")
            if kind == "stock":
                for r in pts:
                    ax.annotate(r["type"], (r["bpw"], r["kld"]["mean"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points", color="0.35")
        ax.set_yscale("log")
        ax.set_xlabel("bits per weight (whole file)")
        ax.set_ylabel("mean KL divergence vs F16 base (log)")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=MODELS, help="repeatable; default: both")
    ap.add_argument("--types", help="comma-separated subset of: " + ",".join(STOCK_TYPES))
    ap.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                    help="comma-separated subset of " + ",".join(KINDS) + " (default: stock,budget)")
    ap.add_argument("--chunks", type=int, default=4, help="512-token chunks of the evaluation text for KLD")
    ap.add_argument("--json", dest="json_out", metavar="OUT",
                    help="the rows file: rows already in it for the same candidate are reused, and it is "
                         "rewritten after every candidate, so an interrupted run goes on from there")
    ap.add_argument("--plot", metavar="OUT.png", help="draw mean KLD against bpw (needs matplotlib: the bench extra)")
    ap.add_argument("--from-json", metavar="IN", help="print the table and draw the plot of rows measured before")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown (as docs/plan.md shows them)")
    a = ap.parse_args(argv)
    types = [t.strip().upper() for t in a.types.split(",")] if a.types else list(STOCK_TYPES)
    unknown = [t for t in types if t not in STOCK_TYPES]
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    if unknown or not set(kinds) <= set(KINDS):
        ap.error(f"unknown type or kind: {', '.join(unknown + [k for k in kinds if k not in KINDS])}")
    if a.from_json:
        rows = load_rows(a.from_json)
    else:
        rows = run(a.model or list(MODELS), types, kinds, a.chunks, a.json_out)
    print(markdown(rows) if a.markdown else table(rows))
    if a.plot:
        Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(rows, a.plot)
        print(f"plot: {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
