"""Quantize with an explicit plan: resolve it, run the real llama-quantize, record what was intended.

:func:`quantize` resolves the plan against the model (so the predicted
types, bytes and bits per weight are known before any work), writes the
plan's rules to a ``--tensor-type-file``, and runs ``llama-quantize`` with the
complete command line from :func:`gl_plugins.plan.command`. The progress bar
follows llama-quantize's one line per tensor.

The output is written to a hidden temporary file in the destination folder
(``.OUT.<pid>.gl-partial``) and renamed to ``OUT`` only after llama-quantize
succeeded and the result parses. An interrupted run (Ctrl-C, SIGTERM) stops
llama-quantize and removes the temporary file; leftovers of a run that was
killed outright are removed by the next run into the same folder. Beside
``OUT`` goes its provenance ``OUT.gl.json`` (see :mod:`gl_plugins.provenance`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gl_plugins.errors import GLError, InputError, ToolError

PARTIAL = ".gl-partial"
_PROGRESS = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")
_TOTAL = re.compile(r"quant size\s+=\s+([\d.]+) MiB \(([\d.]+) BPW\)")
_VERSION = re.compile(r"^version:\s*(.+)$", re.I)
_FALLBACKS = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback quantization")


@dataclass
class QuantizeResult:
    output: Path
    provenance: Path
    record: dict
    resolution: object  # gl_plugins.plan.Resolution
    seconds: float


# ---------------------------------------------------------------- temporary files

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}{PARTIAL}")


def clean_stale(out: Path) -> list[Path]:
    """Remove temporary outputs for ``out`` left by runs whose process is gone."""
    removed = []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(\d+){re.escape(PARTIAL)}$")
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


class _SigtermRaises:
    """While active, SIGTERM raises :class:`gl_plugins.interrupts.Terminated` (as ``gl`` itself arranges),
    also when :func:`quantize` is called as a library, so the clean-up runs."""

    def __enter__(self):
        self.old = None
        if _main_thread() and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            from gl_plugins.interrupts import install

            self.old = signal.getsignal(signal.SIGTERM)
            install()
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------- running llama-quantize

def _run_quantize(argv: list[str], n_tensors: int, progress: bool) -> tuple[str, str | None, float]:
    """Run llama-quantize, driving a progress bar from its per-tensor lines; (output tail, version, seconds)."""
    from tqdm import tqdm

    from gl_plugins.toolchain.llamacpp import last_error_line

    tail: deque[str] = deque(maxlen=60)
    version = None
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", bufsize=1)
    try:
        with tqdm(total=n_tensors, desc="quantizing", unit="tensor", file=sys.stderr,
                  disable=None if progress else True, leave=False) as bar:
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                if version is None and (v := _VERSION.match(line)):
                    version = v.group(1).strip()
                m = _PROGRESS.match(line)
                if m:
                    bar.total = int(m.group(2))
                    bar.n = int(m.group(1))
                    bar.refresh()
        rc = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: stop llama-quantize before removing its output
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
    text = "\n".join(tail)
    if rc != 0:
        why = f"was killed by signal {-rc}" if rc < 0 else f"failed with status {rc}"
        raise ToolError(f"llama-quantize {why}: {last_error_line(text)}")
    return text, version, time.monotonic() - start


def quantize(model: str | os.PathLike, out: str | os.PathLike, plan, *, imatrix: str | os.PathLike | None = None,
             threads: int | None = None, force: bool = False, progress: bool = True, allow_requantize: bool = False,
             echo=None) -> QuantizeResult:
    """Quantize ``model`` to ``out`` with ``plan`` (a :class:`~gl_plugins.plan.resolve.TensorPlan`) on
    ``threads`` threads (default: :func:`~gl_plugins.toolchain.llamacpp.default_threads`).
    ``allow_requantize`` passes ``--allow-requantize``: llama-quantize then accepts a quantized model."""
    from gl_plugins import __version__
    from gl_plugins.quantize import provenance
    from gl_plugins.digests import digest, remember, sha256_file
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.model.gguf_header import read_header
    from gl_plugins.toolchain.llamacpp import default_threads, find_tool, tool_version
    from gl_plugins.plan.resolve import command, plan_to_dict, resolve
    from gl_plugins.plan.tensor_map import render, write_map

    say = echo or (lambda _msg: None)
    from gl_plugins.toolchain.samples import local_model

    model, out = local_model(model), Path(out)
    if not model.is_file():
        raise InputError(model, "file not found" if not model.exists() else "is not a file")
    if out.exists() and out.resolve() == model.resolve():
        raise InputError(out, "is the input model; choose another output path")
    if out.is_dir():
        raise InputError(out, "is a folder; give the path of the GGUF file to write")
    if out.exists() and not force:
        raise InputError(out, "already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise InputError(out.parent, "folder not found")
    if imatrix is not None:
        imatrix = Path(imatrix)
        if not imatrix.is_file():
            raise InputError(imatrix, "importance matrix not found")
        plan = dataclasses.replace(plan, imatrix=True)
    elif plan.imatrix:
        raise GLError("the plan needs an importance matrix (its types are made only with one); give --imatrix FILE")

    facts = facts_from_gguf(model)
    res = resolve(plan, facts)
    blocked = res.needs_imatrix() if imatrix is None else []
    if blocked:
        a = blocked[0]
        raise GLError(f"{model}: {len(blocked)} tensors get types llama-quantize makes only with an importance matrix "
                      f"(e.g. {a.name} -> {a.type}); give --imatrix FILE or choose other types")
    exe = find_tool("llama-quantize")
    say(f"plan: {len(res.assignments)} tensors, {res.bytes / 2**20:.1f} MiB, {res.bpw:.3f} bits per weight "
        f"predicted, {len(res.fallbacks())} shape fallbacks")

    clean_stale(out)
    partial = partial_path(out)
    wrote_provenance = False
    with tempfile.TemporaryDirectory(prefix="gl-quantize-") as tmp, _SigtermRaises():
        map_path = os.path.join(tmp, "tensor-types.txt") if plan.rules else None
        if map_path:
            write_map(map_path, plan.rules)
        argv = [os.fspath(exe), *(["--allow-requantize"] if allow_requantize else []),
                *command(plan, os.fspath(model), os.fspath(partial), map_path, os.fspath(imatrix) if imatrix else None,
                         threads=threads or default_threads())]
        say("running: " + shlex.join(argv))
        try:
            log, version, seconds = _run_quantize(argv, len(res.assignments), progress)
            read_header(partial)  # the result must parse before it is given the final name
            total = _TOTAL.search(log)
            fb = _FALLBACKS.search(log)
            src_sha, _ = digest(model)  # remembered per (path, size, mtime): the base is hashed once
            record = {
                "gl_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "output": {"path": out.name, "bytes": partial.stat().st_size, "sha256": sha256_file(partial)},
                "source": {"path": os.fspath(model.resolve()), "bytes": model.stat().st_size, "sha256": src_sha},
                "imatrix": ({"path": os.fspath(imatrix.resolve()), "sha256": sha256_file(imatrix)}
                            if imatrix else None),
                "plan": plan_to_dict(plan),
                "tensor_map": render(plan.rules) if plan.rules else None,
                "command": argv,
                "llama_cpp": version or tool_version(find_tool("llama-completion")),
                "predicted": {"bpw": round(res.bpw, 4), "bytes": res.bytes, "n_params": res.n_params,
                              "fallbacks": len(res.fallbacks())},
                "measured": {"bpw": float(total.group(2)) if total else None,
                             "mib": float(total.group(1)) if total else None,
                             "fallbacks": int(fb.group(1)) if fb else 0, "seconds": round(seconds, 2)},
                "assignments": {a.name: {"type": a.type, "requested": a.requested, "reason": a.reason}
                                for a in res.assignments},
            }
            prov = provenance.write(out, record)
            wrote_provenance = True
            os.replace(partial, out)
            wrote_provenance = False
            remember(out, record["output"]["sha256"])
        finally:
            if partial.exists():
                partial.unlink()
            if wrote_provenance:  # the GGUF never got its name: its provenance must not stay
                provenance.path_for(out).unlink(missing_ok=True)
    say(f"wrote {out} ({record['output']['bytes'] / 2**20:.1f} MiB, "
        f"{record['measured']['bpw'] if total else round(res.bpw, 2)} BPW) in {seconds:.1f} s; provenance {prov.name}")
    return QuantizeResult(out, prov, record, res, seconds)


def build_variant(base, out, recipe: str | None = None, options: dict | None = None, map_path=None,
                  base_type: str | None = None, imatrix=None, echo=print, threads: int | None = None,
                  where: str = "", guard: bool = False, floor: dict | None = None) -> QuantizeResult:
    """Build a gl.toml variant: a recipe with options, a map over a base type, or a stock base type
    (see :func:`~gl_plugins.plan.sources.plan_for`; ``where`` names the build in messages). With
    ``guard`` the plan is measured against the stock type of nearest size and the better file is
    written (:func:`gl_plugins.validate.guard.guard`). With ``floor`` (gl floor's settings) the file
    is the smallest that passes its gates (:func:`gl_plugins.floor.search.find_floor`)."""
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.plan.sources import plan_for
    from gl_plugins.toolchain.samples import local_model

    base = local_model(base)
    if floor is not None:
        from gl_plugins.floor.search import Gates, find_floor
        from gl_plugins.plan.resolve import resolve
        from gl_plugins.quantize import provenance

        settings = dict(floor)
        gates = Gates(**{k: settings.pop(k) for k in ("max_kld", "max_p99", "max_loops") if k in settings})
        found = find_floor(base, imatrix=imatrix, gates=gates, keep=Path(out), threads=threads, echo=echo, **settings)
        kept = found.smallest
        prov = provenance.path_for(Path(out))
        return QuantizeResult(Path(out), prov, provenance.load(prov), resolve(kept.plan, facts_from_gguf(base)),
                              kept.outcome.seconds)
    plan = plan_for(facts_from_gguf(base), recipe=recipe, options=options, map_path=map_path, base_type=base_type,
                    imatrix=imatrix, where=where)
    if guard:
        from gl_plugins.validate.guard import guard as guarded

        return guarded(base, out, plan, imatrix=imatrix, threads=threads, echo=echo).result
    return quantize(base, out, plan, imatrix=imatrix, threads=threads, echo=echo)
