"""Ask llama-quantize itself: ``--dry-run`` a plan and read its per-tensor report.

``llama-quantize --dry-run`` decides every tensor's type and size without
writing anything and prints one line per tensor::

    [   3/ 236] blk.0.attn_k.weight  - [   640,    256,      1,      1], type =    f16, size =     0.31 MiB ->     0.09 MiB (q4_0)

and a total ``quant size = X MiB (Y BPW)``. :func:`dry_run` runs it for a plan
and :func:`disagreements` holds the result against :func:`gl_plugins.plan.resolve`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

from gl_plugins.errors import ToolError

_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s+(\S+), size =\s+([\d.]+) MiB"
                   r"(?: ->\s+([\d.]+) MiB \((\S+)\))?")
_TOTAL = re.compile(r"quant size\s+=\s+([\d.]+) MiB \(([\d.]+) BPW\)")
_FALLBACKS = re.compile(r"WARNING: (\d+) of (\d+) tensor\(s\) required fallback quantization")
MIB = 1024 * 1024


@dataclass
class DryRun:
    types: dict[str, str]  # tensor -> final ggml type (upper case)
    mib: dict[str, float]  # tensor -> size in MiB as printed (2-3 decimals)
    total_mib: float
    bpw: float  # as printed, 2 decimals
    n_fallback: int
    needs_imatrix: bool
    args: list[str]
    output: str


def parse(output: str, args: list[str] | None = None) -> DryRun:
    types, mib = {}, {}
    for line in output.splitlines():
        m = _LINE.match(line)
        if m:
            types[m[1]] = (m[5] or m[2]).upper()
            mib[m[1]] = float(m[4] or m[3])
    t = _TOTAL.search(output)
    if t is None:
        raise ToolError("llama-quantize --dry-run printed no 'quant size' line:\n" + output[-800:])
    fb = _FALLBACKS.search(output)
    return DryRun(types, mib, float(t[1]), float(t[2]), int(fb[1]) if fb else 0,
                  "will require an imatrix" in output, list(args or []), output)


def dry_run(model: str | os.PathLike, plan, *, imatrix_path: str | None = None, threads: int | None = None) -> DryRun:
    """Run ``llama-quantize --dry-run`` on ``model`` with ``plan`` (its rules in a temporary map)."""
    from gl_plugins.toolchain.llamacpp import default_threads, run_tool
    from gl_plugins.plan.resolve import command
    from gl_plugins.plan.tensor_map import write_map

    with tempfile.TemporaryDirectory(prefix="gl-dry-run-") as tmp:
        map_path = os.path.join(tmp, "map.txt") if plan.rules else None
        if map_path:
            write_map(map_path, plan.rules)
        args = command(plan, os.fspath(model), "OUTPUT", map_path, imatrix_path,
                       threads=threads or default_threads())
        if not (plan.imatrix and imatrix_path) and "--imatrix" in args:
            i = args.index("--imatrix")
            del args[i:i + 2]
        i = args.index("OUTPUT")
        args = ["--dry-run", *args[:i], *args[i + 1:]]
        r = run_tool("llama-quantize", args, timeout=600)
        return parse(r.stdout + r.stderr, args)


def disagreements(resolution, dr: DryRun) -> list[str]:
    """Where gl's resolution and llama-quantize's dry run differ (empty when they agree)."""
    out = []
    ours = {a.name: a for a in resolution.assignments}
    for name in sorted(set(ours) | set(dr.types)):
        a = ours.get(name)
        theirs = dr.types.get(name)
        if a is None:
            out.append(f"{name}: llama-quantize has it, gl does not")
        elif theirs is None:
            out.append(f"{name}: gl has it, llama-quantize does not")
        elif a.type != theirs:
            out.append(f"{name}: gl says {a.type}, llama-quantize says {theirs}")
        elif abs(a.bytes / MIB - dr.mib[name]) > 0.006:
            out.append(f"{name}: gl says {a.bytes / MIB:.3f} MiB, llama-quantize says {dr.mib[name]} MiB")
    if abs(resolution.bytes / MIB - dr.total_mib) > 0.006:
        out.append(f"total: gl says {resolution.bytes / MIB:.2f} MiB, llama-quantize says {dr.total_mib} MiB")
    if abs(round(resolution.bpw, 2) - dr.bpw) > 0.011:
        out.append(f"bpw: gl says {resolution.bpw:.2f}, llama-quantize says {dr.bpw}")
    fb = sum(1 for a in resolution.assignments if a.reason.startswith("shape fallback"))
    if fb != dr.n_fallback:
        out.append(f"fallbacks: gl counts {fb}, llama-quantize {dr.n_fallback}")
    return out
