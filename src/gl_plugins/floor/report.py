"""The floor as people read it: a table, a markdown report with a picture, and the commands behind it."""

from __future__ import annotations

import shlex
from pathlib import Path

from gl_plugins.errors import GLError


HEADERS = ("candidate", "bpw", "MiB", "mean KLD", "p99", "same top", "loops", "verdict")


def measured(floor) -> list:
    """The measured candidates, smallest first."""
    return sorted((c for c in floor.candidates if c.measured), key=lambda c: (c.outcome.bpw, c.kind))


def cells(c) -> tuple[str, ...]:
    """A measured candidate's row: the columns of :data:`HEADERS`, formatted."""
    o, k = c.outcome, c.outcome.kld
    nan = float("nan")
    return (f"{c.kind} {c.name}", f"{o.bpw:.3f}", f"{o.bytes / 2**20:.1f}", f"{k.get('mean', nan):.4f}",
            f"{k.get('p99', nan):.3f}", f"{100 * k.get('same_top_p', nan):.1f} %",
            "-" if o.loops is None else f"{o.loops:.2f}", ("pass" if c.passed else "fail: " + "; ".join(c.why))
            + (f" (predicted KLD {c.predicted:.4f})" if c.predicted is not None else ""))


def table(floor) -> str:
    """One line per measured candidate, smallest first, then the two floors and the gain."""
    widths = (22, 7, 9, 10, 8, 10, 7)

    def line(values):
        first, *rest, verdict = values
        return f"{first:<{widths[0]}}" + "".join(f"{v:>{w}}" for v, w in zip(rest, widths[1:])) + f"  {verdict}"

    lines = [line(HEADERS), *(line(cells(c)) for c in measured(floor)), "", *summary(floor)]
    return "\n".join(lines)


def summary(floor) -> list[str]:
    out = []
    for label, c in (("stock floor", floor.stock), ("budget floor", floor.budget)):
        if c is None:
            out.append(f"{label}: none passes in {floor.low:g}-{floor.high:g} bpw")
            continue
        line = f"{label}: {c.name} at {c.outcome.bpw:.3f} bpw, {c.outcome.bytes / 1e6:,.1f} MB (mean KLD {c.mean_kld:.4f})"
        smaller = [x for x in floor.candidates if x.kind == c.kind and x.bpw < c.bpw]
        if not smaller:
            line += f"; nothing smaller in the range: the floor may lie below {floor.low:g} bpw (widen --range)"
        out.append(line)
    gain = floor.gain_bytes
    if gain is not None:
        word = "smaller" if gain >= 0 else "larger"
        share = abs(gain) / floor.stock.outcome.bytes * 100
        out.append(f"budget floor is {abs(gain) / 1e6:,.1f} MB ({share:.1f} %) {word} than the stock floor")
    return out


def reproduce(c, model: str, imatrix: str | None, chunks: int = 4) -> list[str]:
    """The gl commands that make and measure candidate ``c`` again."""
    out = f"{Path(model).stem}-{c.name.replace('@', '-')}.gguf"
    imx = ["--imatrix", imatrix] if imatrix and c.plan.imatrix else []
    if c.kind == "stock":
        make = ["gl", "quantize", model, out, "--base-type", c.name, *imx]
    else:
        make = ["gl", "quantize", model, out, "--recipe", "budget", "--target-bpw", f"{c.target:.6g}", *imx]
        for key, value in sorted(c.plan.params.items()):
            if key in ("errors",) and value != "gaussian":
                make += [f"--{key}", str(value)]
    cmds = [shlex.join(make)]
    if c.remedy:
        quant = c.name if c.kind == "stock" else c.plan.base_type
        cmds.insert(0, "# " + c.remedy + "; the pins come from: " + shlex.join(
            ["gl", "imatrix", "audit", model, "--imatrix", imatrix or "IMATRIX", "--quant", quant,
             "--emit-rules", "pins.txt"]))
    cmds.append(shlex.join(["gl", "validate", out, "--base", model, "--set", f"kld.chunks={chunks}"]))
    return cmds


def plot(floor, path) -> None:
    """Mean KLD (log) against bpw: stock and budget candidates, filled where they pass, the gate drawn."""
    try:
        import matplotlib
    except ImportError:
        raise GLError("the report's picture is drawn with matplotlib, which is not installed; "
                      "pip install 'gl-plugins[bench]' or leave out --report") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gl_plugins.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {"stock": ("tab:blue", "o", "llama.cpp stock type"), "budget": ("tab:orange", "s", "gl budget plan")}
    for kind, (color, marker, label) in styles.items():
        pts = sorted((c for c in floor.candidates if c.kind == kind and c.measured and (c.mean_kld or 0) > 0),
                     key=lambda c: c.outcome.bpw)
        if not pts:
            continue
        for passed in (True, False):
            sel = [c for c in pts if c.passed == passed]
            if sel:
                ax.scatter([c.outcome.bpw for c in sel], [c.mean_kld for c in sel], marker=marker, s=46,
                           facecolors=color if passed else "none", edgecolors=color, linewidths=1.4,
                           label=f"{label}: {'passes' if passed else 'fails'}", zorder=3)
        for c in pts:
            ax.annotate(c.name, (c.outcome.bpw, c.mean_kld), fontsize=6, xytext=(3, 3), textcoords="offset points",
                        color="0.35")
    ax.axhline(floor.gates.max_kld, color="tab:red", linestyle="--", linewidth=1,
               label=f"gate: mean KLD {floor.gates.max_kld:g}")
    for c, color in ((floor.stock, "tab:blue"), (floor.budget, "tab:orange")):
        if c is not None:
            ax.axvline(c.outcome.bpw, color=color, linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (whole file)")
    ax.set_ylabel("mean KL divergence vs base (log)")
    ax.set_title(f"floor of {Path(floor.model).name} ({floor.gates.describe()})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def write_report(floor, folder, command: list[str] | None = None) -> Path:
    """``folder``/report.md and ``folder``/floor.png (both written atomically); the report's path."""
    from gl_plugins.atomic import atomic_write

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GLError(f"{folder}: the report folder cannot be made ({e.strerror or e})") from None
    plot(floor, folder / "floor.png")
    model, imatrix = floor.model, floor.imatrix
    rows = measured(floor)
    md = [f"# The floor of {Path(model).name}", "",
          f"Gates: {floor.gates.describe()}. Range: {floor.low:g}-{floor.high:g} bits per weight. "
          f"Importance matrix: {Path(imatrix).name if imatrix else 'none'}. "
          f"KL divergence against `{Path(model).name}` on gl's evaluation text. "
          f"{sum(1 for c in rows if not c.cached)} candidates measured in this run, "
          f"{sum(1 for c in rows if c.cached)} from the cache, {floor.seconds / 60:.1f} min.", ""]
    md += [f"- {line}" for line in summary(floor)]
    md += ["", "![mean KLD against bits per weight](floor.png)", "",
           "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    md += ["| " + " | ".join(cells(c)) + " |" for c in rows]
    skipped = [c.name for c in floor.candidates if not c.measured]
    if skipped:
        md += ["", "Not measured (the bisection of the ladder did not need them): " + ", ".join(skipped) + "."]
    md += ["", "## Reproduce", ""]
    if command:
        md += ["The whole search:", "", "```", shlex.join(command), "```", ""]
    for c in rows:
        md += [f"{c.kind} {c.name}:", "", "```", *reproduce(c, model, imatrix, floor.chunks), "```", ""]
    path = folder / "report.md"
    atomic_write(path, "\n".join(md))
    return path
