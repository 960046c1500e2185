"""The measured guard (``gl quantize --guard``): a plan against llama.cpp's stock type of nearest size.

Both files are quantized from the same base with the same imatrix and measured
against that base by :func:`gl_plugins.validate.candidates.measure` (mean KLD on
the evaluation text, the generation-loop check); the better one becomes OUT with
its provenance, which records both outcomes. A file whose generation check fails
loses to one whose check passes; otherwise the lower mean KLD wins, and a tie
keeps the plan. OUT appears only at the end; the two candidates live in a
temporary folder beside it, so an interrupted guard leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gl_plugins.errors import GLError, InputError



@dataclass
class Guarded:
    """What the guard measured and which file it kept."""

    kept: str  # "plan" or "stock"
    stock_type: str
    plan: object  # validate.candidates.Outcome
    stock: object
    result: object  # quantize.run.QuantizeResult of OUT

    def to_dict(self) -> dict:
        return {"kept": self.kept, "stock_type": self.stock_type, "plan": self.plan.to_dict(),
                "stock": self.stock.to_dict()}


def nearest_stock(facts, bpw: float, imatrix) -> tuple[str, float]:
    """The llama.cpp file type whose mixture of this model is nearest ``bpw`` (and that llama-quantize
    makes with the imatrix given or without one), with its bpw."""
    from gl_plugins.plan.recipes import stock_mixtures

    found = stock_mixtures(facts, imatrix)
    if not found:
        raise GLError(f"{facts.source}: llama-quantize makes no stock type of this model to guard against")
    ftype, stock_bpw, _ = min(found, key=lambda m: (abs(m[1] - bpw), m[1]))
    return ftype, stock_bpw


def _worse(outcome) -> tuple[bool, float]:
    """Orders outcomes from better to worse: a passing generation check first, then the mean KLD."""
    return (outcome.collapsed, float(outcome.kld.get("mean", float("inf"))))


def guard(model, out, plan, *, imatrix=None, force: bool = False, chunks: int = 4, threads: int | None = None,
          echo=print) -> Guarded:
    """Quantize ``model`` with ``plan`` and with the stock type of nearest size, measure both against
    ``model``, and write the better to ``out`` (see the module docstring)."""
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.plan.resolve import resolve, stock_plan
    from gl_plugins.quantize import provenance
    from gl_plugins.quantize.run import QuantizeResult
    from gl_plugins.digests import remember
    from gl_plugins.toolchain.samples import local_model
    from gl_plugins.validate.candidates import measure

    model, out = local_model(model), Path(out)
    if out.exists() and not force:
        raise InputError(out, "already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise InputError(out.parent, "folder not found")
    facts = facts_from_gguf(model)
    res = resolve(plan, facts)
    ftype, stock_bpw = nearest_stock(facts, res.bpw, imatrix)
    stock_res = resolve(stock_plan(ftype, imatrix=imatrix is not None), facts)
    need = res.bytes + stock_res.bytes + (64 << 20)
    free = shutil.disk_usage(out.parent).free
    if free < need:
        raise InputError(out.parent, f"has {free / 2**20:,.0f} MiB free; the guard writes two files of "
                                     f"{res.bytes / 2**20:,.0f} and {stock_res.bytes / 2**20:,.0f} MiB")
    echo(f"guard: the plan ({res.bpw:.3f} bpw) against stock {ftype} ({stock_bpw:.3f} bpw), mean KLD on "
         f"{chunks} x 512 tokens of the evaluation text against {model.name}")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.guard-") as tmp:
        files = {"plan": Path(tmp) / "plan.gguf", "stock": Path(tmp) / "stock.gguf"}
        outcomes = {
            "plan": measure(model, plan, label="plan", imatrix=imatrix, chunks=chunks, keep=files["plan"],
                            threads=threads, echo=echo),
            "stock": measure(model, stock_plan(ftype, imatrix=imatrix is not None), label=f"stock {ftype}",
                             imatrix=imatrix, chunks=chunks, keep=files["stock"], threads=threads, echo=echo),
        }
        for name, o in outcomes.items():
            label = "the plan" if name == "plan" else f"stock {ftype}"
            k = o.kld
            loops = "-" if o.loops is None else f"{o.loops:.2f}"
            failed = "; generation check fails" if _worse(o)[0] else ""
            echo(f"guard: {label}: {o.bpw:.3f} bpw, {o.bytes / 2**20:,.1f} MiB, mean KLD {k.get('mean', 0):.4f} "
                 f"(p99 {k.get('p99', 0):.3f}, same top token {100 * k.get('same_top_p', 0):.1f} %), loops "
                 f"{loops}{failed}")
        kept = "stock" if _worse(outcomes["stock"]) < _worse(outcomes["plan"]) else "plan"
        record = provenance.load(provenance.path_for(files[kept]))
        record.pop("format", None)
        record["output"]["path"] = out.name
        record["guard"] = {"kept": kept, "stock_type": ftype,
                           "plan": outcomes["plan"].to_dict(), "stock": outcomes["stock"].to_dict()}
        prov = provenance.write(out, record)
        try:
            os.replace(files[kept], out)
        except BaseException:
            prov.unlink(missing_ok=True)  # the GGUF never got its name: its provenance must not stay
            raise
        remember(out, record["output"]["sha256"])
    p, s = (outcomes[k].kld.get("mean") for k in ("plan", "stock"))
    ratio = f" ({p / s:.2f}x stock's mean KLD)" if p is not None and s else ""
    echo(f"guard: kept {'the plan' if kept == 'plan' else f'stock {ftype}'}{ratio}; wrote {out}, provenance {prov.name}")
    result = QuantizeResult(out, prov, record, stock_res if kept == "stock" else res, outcomes[kept].seconds)
    return Guarded(kept, ftype, outcomes["plan"], outcomes["stock"], result)
