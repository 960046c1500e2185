"""gl's built-in measured evidence: the quality frontier's files as evidence lines.

Every row of the frontier (bench/quality.py's rows file: each stock llama-quantize
type and gl's budget plan at its size, on the F16 bases of gl's two real sample
models, measured against those bases) becomes one observation of
``src/gl_plugins/data/measured_evidence.jsonl``, which ``gl predict --evidence
builtin`` scores the predictors on beside the lab's five observations, per source.

The outcome is the verdict of gl floor's default gates (gl_plugins.floor.search.Gates:
mean KLD <= 0.3, at most half the generation prompts collapsing, a sound file);
the figures (bpw, kld_mean, kld_p99, same-top-p, loop_share …) let
``gl predict --evidence builtin --max-kld X`` judge them by other bounds. A budget
row carries ``plan`` (its candidate key), so the stock-type predictors abstain on it.
The facts are read from the F16 bases gl provisions (headers only).

    python bench/builtin_evidence.py [--rows bench/results/quality.json] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gl_plugins.atomic import atomic_write  # noqa: E402
from gl_plugins.facts import facts_from_gguf  # noqa: E402
from gl_plugins.floor.search import Gates  # noqa: E402
from gl_plugins.predict.evidence import builtin_path, evidence_figures, measured_observation  # noqa: E402
from gl_plugins.toolchain.samples import provision  # noqa: E402
from gl_plugins.validate.candidates import Outcome  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def observations(rows: list[dict]) -> list[dict]:
    gates = Gates()
    facts = {}
    out = []
    for r in sorted(rows, key=lambda r: (r["model"], r["bpw"], r["kind"] != "stock")):
        model = f"pkg:{r['model']}-f16"
        if model not in facts:
            facts[model] = facts_from_gguf(provision(f"{r['model']}-f16"))
        o = Outcome(key=r["key"], label=r["type"], bpw=r["bpw"], bytes=r["bytes"], kld=r["kld"], loops=r["loops"],
                    errors=r["errors"])
        why = gates.judge(o)
        what = "stock" if r["kind"] == "stock" else f"gl's {r['kind']} plan at the size of stock"
        note = (f"gl bench/quality.py: {what} {r['type']} of the F16 base, {r['bpw']:.3f} bpw, "
                f"{'with' if r['imatrix'] else 'without'} gl's calibration imatrix, KLD on 4 x 512 tokens of "
                f"the evaluation text; {'passes' if not why else 'fails ' + '; '.join(why)} "
                f"({gates.describe()})")
        figures = evidence_figures({"bpw": r["bpw"], "loop_share": r["loops"], "kld": r["kld"]})
        obs = measured_observation(model, facts[model], r["type"], figures, "fails" if why else "works", note,
                                   plan=None if r["kind"] == "stock" else r["key"])
        obs["facts"]["source"] = model  # the pkg: name, not this machine's cache path
        out.append(obs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=str(ROOT / "bench" / "results" / "quality.json"))
    ap.add_argument("--out", default=str(builtin_path("measured")))
    a = ap.parse_args(argv)
    rows = json.loads(Path(a.rows).read_text())
    lines = observations(rows)
    atomic_write(a.out, "".join(json.dumps(o, ensure_ascii=False, separators=(", ", ": ")) + "\n" for o in lines))
    by = {}
    for o in lines:
        key = (o["model"], "plan" if "plan" in o else "stock")
        by.setdefault(key, [0, 0])[o["outcome"] == "works"] += 1
    for (model, kind), (fails, works) in sorted(by.items()):
        print(f"{model:<32} {kind:<6} {works:>3} work, {fails:>3} fail")
    print(f"wrote {len(lines)} observations to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
