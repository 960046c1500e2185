"""Quality at matched size: llama.cpp's stock types against gl's ``budget`` recipe.

On the real Gemma 3 270M (F16 base), quantize with stock llama-quantize types
(Q2_K, Q3_K_S, Q4_K_M without an imatrix; IQ4_XS with one) and with
``budget --target-bpw B`` where B is each stock file's own bits per weight (the
budget is given the imatrix only where the stock type had one). Perplexity of
every file, and of the F16 base, is measured with llama-perplexity on a fixed
slice of Python's ``pydoc_data.topics`` text (the imatrix is computed on a
different, non-overlapping slice).

Prints a table (bpw, size, PPL, PPL ratio to F16) and, at each matched size,
the ratio gl/stock of perplexities (below 1: gl's plan is better).

    python bench/quality.py [--chunks 12] [--threads 2] [--imatrix FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gl_plugins.toolchain import llamacpp  # noqa: E402
from gl_plugins.toolchain.samples import provision  # noqa: E402
from gl_plugins.facts import load_facts  # noqa: E402
from gl_plugins.plan.resolve import command, resolve, stock_plan  # noqa: E402
from gl_plugins.plan.recipes import Budget  # noqa: E402
from gl_plugins.plan.tensor_map import write_map  # noqa: E402

STOCK = [("Q2_K", False), ("Q3_K_S", False), ("Q4_K_M", False), ("IQ4_XS", True)]
EVAL_SLICE = (0, 120_000)  # characters of the sorted, joined topics used for perplexity
CALIB_SLICE = (250_000, 400_000)  # characters used for the imatrix
_PPL = re.compile(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)")


def topics_text(a: int, b: int) -> str:
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[a:b]


def perplexity(model: Path, text: Path, chunks: int, threads: int) -> tuple[float, float]:
    r = llamacpp.run_tool("llama-perplexity", ["-m", model, "-f", text, "-c", 512, "--chunks", chunks,
                                               "-t", threads, "-b", 512], timeout=3600)
    m = _PPL.search(r.stdout + r.stderr)
    if not m:
        raise SystemExit(f"llama-perplexity printed no final estimate for {model}")
    return float(m[1]), float(m[2])


def quantize(base: Path, plan, out: Path, work: Path, imatrix: Path | None, threads: int) -> None:
    map_path = None
    if plan.rules:
        map_path = work / (out.stem + ".map.txt")
        write_map(map_path, plan.rules)
    args = command(plan, base, out, map_path, imatrix if plan.imatrix else None, threads=threads)
    llamacpp.run_tool("llama-quantize", args, timeout=3600)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=12, help="512-token chunks of text for perplexity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--imatrix", help="an imatrix for the base (default: computed on the calibration slice)")
    ap.add_argument("--keep", help="keep the quantized files in this folder")
    a = ap.parse_args(argv)

    base = provision("gemma3-270m-f16")
    facts = load_facts(base)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="gl-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    eval_txt = work / "eval.txt"
    eval_txt.write_text(topics_text(*EVAL_SLICE))
    if a.imatrix:
        imx = Path(a.imatrix)
    else:
        imx = work / "imatrix.gguf"
        if not imx.exists():
            calib = work / "calib.txt"
            calib.write_text(topics_text(*CALIB_SLICE))
            print("computing the imatrix on the calibration slice ...", file=sys.stderr)
            llamacpp.run_tool("llama-imatrix", ["-m", base, "-f", calib, "-o", imx, "-t", a.threads, "-c", 512,
                                                "--chunks", 40], timeout=7200)

    rows = []  # (label, bpw, bytes, ppl, err, kind, matched_to)

    def measure(label, path, bpw, size, kind, matched=None):
        t = time.time()
        ppl, err = perplexity(path, eval_txt, a.chunks, a.threads)
        print(f"{label:<34} {bpw:6.3f} bpw  PPL {ppl:8.3f} ± {err:.3f}  ({time.time() - t:.0f} s)", file=sys.stderr)
        rows.append((label, bpw, size, ppl, err, kind, matched))

    measure("F16 base", base, resolve(stock_plan("F16"), facts).bpw, os.path.getsize(base), "base")
    for ftype, with_imx in STOCK:
        plan = stock_plan(ftype, imatrix=with_imx)
        res = resolve(plan, facts)
        out = work / f"stock-{ftype}.gguf"
        quantize(base, plan, out, work, imx, a.threads)
        label = f"stock {ftype}" + (" (imatrix)" if with_imx else "")
        measure(label, out, res.bpw, os.path.getsize(out), "stock")
        bplan = Budget().plan(facts, target_bpw=res.bpw, imatrix_path=str(imx) if with_imx else None)
        bres = resolve(bplan, facts)
        bout = work / f"budget-{ftype}.gguf"
        quantize(base, bplan, bout, work, imx, a.threads)
        measure(f"gl budget @ {res.bpw:.3f}" + (" (imatrix)" if with_imx else ""), bout, bres.bpw,
                os.path.getsize(bout), "gl", label)
        out.unlink()
        bout.unlink()

    f16 = rows[0][3]
    print(f"\nGemma 3 270M, perplexity on {a.chunks} x 512 tokens of pydoc_data.topics "
          f"(characters {EVAL_SLICE[0]}-{EVAL_SLICE[1]})")
    print("note: the F16 base is the package's Q4_K_M file dequantized, so stock Q4_K_M re-creates it almost "
          "exactly\n")
    print(f"{'file':<34} {'bpw':>7} {'MiB':>8} {'PPL':>9} {'±':>6} {'PPL/F16':>8}")
    for label, bpw, size, ppl, err, kind, _ in rows:
        print(f"{label:<34} {bpw:7.3f} {size / 2**20:8.2f} {ppl:9.3f} {err:6.3f} {ppl / f16:8.3f}")
    print(f"\n{'matched size':<34} {'gl bpw':>7} {'stock bpw':>9} {'gl/stock PPL':>13}")
    stock = {r[0]: r for r in rows if r[5] == "stock"}
    wins = 0
    for label, bpw, size, ppl, err, kind, matched in rows:
        if kind != "gl":
            continue
        s = stock[matched]
        ratio = ppl / s[3]
        wins += ratio < 1 and bpw <= s[1] + 1e-9
        print(f"{matched:<34} {bpw:7.3f} {s[1]:9.3f} {ratio:13.4f}")
    print(f"\ngl's budget plan is smaller-or-equal and has lower perplexity at {wins} of "
          f"{sum(1 for r in rows if r[5] == 'gl')} matched sizes")
    for label, bpw, size, ppl, err, kind, _ in rows:
        if kind != "gl":
            continue
        bigger = [r for r in rows if r[5] == "stock" and r[1] >= bpw - 1e-9]
        beaten = [r[0] for r in bigger if ppl < r[3]]
        print(f"{label}: lower perplexity than {len(beaten)} of the {len(bigger)} stock files of equal or "
              f"larger size" + (f" ({', '.join(beaten)})" if beaten else ""))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
