"""Running a GGUF through llama.cpp: greedy completions and perplexity on a fixed text.

:func:`complete` runs ``llama-completion`` (greedy: ``--temp 0``, a token
limit, no conversation mode) and returns the generated text and whether it
ran to the limit. :func:`perplexity` runs ``llama-perplexity`` on the start of
the evaluation text (:mod:`gl_plugins.toolchain.texts`), in a few small
chunks, so a 270M model takes seconds; :func:`kl_divergence` measures a file
against its base's logits on the evaluation text. A model llama.cpp cannot load or run raises
:class:`ModelRunError` (a validator turns it into a finding); a missing tool
raises :class:`~gl_plugins.errors.ToolError`.

Both use gl's one default thread count
(:func:`~gl_plugins.toolchain.llamacpp.default_threads`). :func:`remembered`
keeps results for an unchanged file (keyed by its sha256) under
``~/.cache/gl/eval``, so a base model is measured once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from gl_plugins.errors import ToolError
from gl_plugins.toolchain.llamacpp import default_threads

class ModelRunError(ToolError):
    """llama.cpp started but could not load or run the model."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


def _run(tool: str, args: list, timeout: float) -> subprocess.CompletedProcess:
    from gl_plugins.toolchain.llamacpp import find_tool, last_error_line

    exe = find_tool(tool)
    try:
        r = subprocess.run([os.fspath(exe), *map(str, args)], capture_output=True, text=True,
                           errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise ModelRunError(f"{tool} did not finish within {timeout:.0f} s", out) from None
    if r.returncode != 0:
        why = f"killed by signal {-r.returncode}" if r.returncode < 0 else f"status {r.returncode}"
        raise ModelRunError(f"{tool} failed ({why}): {cause(r.stderr + r.stdout, last_error_line)}",
                            r.stdout + r.stderr)
    return r


_LOG_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [A-Z] ")
_LOAD_ERROR = re.compile(r"error loading model: (.+)$", re.M)


def cause(output: str, fallback) -> str:
    """The line of llama.cpp's log that says why: the model-loading error when there is one."""
    if not output.strip():  # llama.cpp logs from a thread; a quick failure can exit before it printed
        return "it printed no reason"
    m = _LOAD_ERROR.findall(output)
    if m:
        return "error loading model: " + m[-1].strip()
    return _LOG_PREFIX.sub("", fallback(output))


# ---------------------------------------------------------------- completion

@dataclass
class Completion:
    prompt: str
    text: str  # the generated continuation, without the prompt
    n_predict: int
    n_generated: int | None  # tokens generated, when llama.cpp reports it
    seconds: float | None = None

    @property
    def hit_limit(self) -> bool | None:
        """Whether generation ran to the token limit (None when unknown)."""
        return None if self.n_generated is None else self.n_generated >= self.n_predict

    def to_dict(self) -> dict:
        return asdict(self)


_PROMPT_TOKENS = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
_SAMPLED = re.compile(r"samplers time =\s*[\d.]+ ms /\s*(\d+) tokens")
_TOTAL_MS = re.compile(r"total time =\s*([\d.]+) ms")


def complete(model: str | os.PathLike, prompt: str, *, n_predict: int = 80, ctx: int = 512,
             threads: int | None = None, timeout: float = 180) -> Completion:
    """Greedy continuation of ``prompt`` by ``model``."""
    threads = threads or default_threads()
    args = ["-m", os.fspath(model), "-p", prompt, "-n", n_predict, "--temp", 0, "--seed", 1, "-no-cnv",
            "-t", threads, "-c", ctx, "--no-display-prompt", "--no-warmup"]
    r = _run("llama-completion", args, timeout)
    log = r.stderr
    p, s, t = _PROMPT_TOKENS.search(log), _SAMPLED.search(log), _TOTAL_MS.search(log)
    n_gen = int(s[1]) - int(p[1]) if p and s else None
    text = r.stdout
    if text.startswith(prompt):  # builds that ignore --no-display-prompt
        text = text[len(prompt):]
    return Completion(prompt, text.rstrip("\n"), n_predict, n_gen, float(t[1]) / 1000 if t else None)


# ---------------------------------------------------------------- perplexity

@dataclass
class Perplexity:
    value: float
    error: float | None  # llama.cpp's +/- estimate
    chunks: int
    ctx: int
    per_chunk: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


_FINAL = re.compile(r"Final estimate: PPL = ([\d.]+|nan|inf)(?: \+/- ([\d.]+|nan|inf))?", re.I)
_CHUNK = re.compile(r"\[(\d+)\]([\d.]+|nan|inf|-?nan)", re.I)


def perplexity(model: str | os.PathLike, *, ctx: int = 128, chunks: int = 8, threads: int | None = None,
               timeout: float = 600) -> Perplexity:
    """Perplexity of ``model`` on the start of the evaluation text (:mod:`gl_plugins.toolchain.texts`),
    ``chunks`` chunks of ``ctx`` tokens."""
    from gl_plugins.toolchain.texts import text_file

    threads = threads or default_threads()
    args = ["-m", os.fspath(model), "-f", text_file("perplexity"), "-c", ctx, "-b", ctx, "--chunks", chunks,
            "-t", threads, "--seed", 1]
    r = _run("llama-perplexity", args, timeout)
    out = r.stdout + r.stderr
    m = _FINAL.search(out)
    if not m:
        raise ModelRunError("llama-perplexity printed no final estimate (the text may be too short "
                            f"for {chunks} chunks of {ctx} tokens)", out)
    per_chunk = [float(v) for _, v in _CHUNK.findall(out)]
    return Perplexity(float(m[1]), float(m[2]) if m[2] else None, len(per_chunk) or chunks, ctx, per_chunk)


# ---------------------------------------------------------------- KL divergence

KLD_CTX = 512
KLD_CHUNKS = 4
KLD_CACHE_MB = 8192  # default limit of the base-logits cache ($GL_KLD_CACHE_MB)


@dataclass
class KLDivergence:
    """llama-perplexity's KL-divergence statistics of a file against its base (fractions, not %)."""

    mean: float
    mean_pm: float | None
    median: float
    p99: float
    p999: float
    max: float
    same_top_p: float
    same_top_p_pm: float | None
    rms_dp: float
    rms_dp_pm: float | None
    ppl_ratio: float
    ppl_ratio_pm: float | None
    chunks: int
    ctx: int

    def figures(self) -> dict:
        """The figures as ``gl validate --json`` reports them under ``"kld"``."""
        return {k: getattr(self, k) for k in ("mean", "median", "p99", "p999", "max", "same_top_p", "rms_dp",
                                               "ppl_ratio")}

    def to_dict(self) -> dict:
        return asdict(self)


_NUM = r"(-?[\d.]+(?:e[-+]?\d+)?|-?nan|-?inf)"


def parse_kld(output: str, chunks: int, ctx: int) -> KLDivergence:
    """The statistics llama-perplexity --kl-divergence prints; ModelRunError when a line is missing."""
    def grab(label: str, percent: bool = False) -> tuple[float, float | None]:
        m = re.search(rf"^.*?{re.escape(label)}\s*:\s*{_NUM}(?:\s*±\s*{_NUM})?", output, re.M)
        if not m:
            raise ModelRunError(f"llama-perplexity printed no {label.strip()!r} line; "
                                f"did it run in KL-divergence mode?", output)
        v, pm = float(m[1]), float(m[2]) if m[2] else None
        return (v / 100, pm / 100 if pm is not None else None) if percent else (v, pm)

    mean, mean_pm = grab("Mean    KLD")
    ratio, ratio_pm = grab("Mean PPL(Q)/PPL(base)")
    same, same_pm = grab("Same top p", percent=True)
    rms, rms_pm = grab("RMS Δp", percent=True)
    return KLDivergence(mean, mean_pm, grab("Median  KLD")[0], grab("99.0%   KLD")[0], grab("99.9%   KLD")[0],
                        grab("Maximum KLD")[0], same, same_pm, rms, rms_pm, ratio, ratio_pm, chunks, ctx)


def _kld_dir() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    return cache_root() / "kld"


def kld_cache_limit() -> int:
    """Bytes the base-logits cache may hold ($GL_KLD_CACHE_MB, default 8192 MiB)."""
    raw = os.environ.get("GL_KLD_CACHE_MB", "").strip()
    try:
        mb = float(raw) if raw else KLD_CACHE_MB
    except ValueError:
        from gl_plugins.errors import GLError

        raise GLError(f"GL_KLD_CACHE_MB must be a number of MiB, not {raw!r}") from None
    return int(mb * (1 << 20))


def logits_bytes(n_vocab: int, ctx: int, chunks: int) -> int:
    """The size of a base-logits file: llama-perplexity keeps the second half of each chunk's logits,
    as 16-bit values, plus the tokens."""
    return 2 * n_vocab * (ctx // 2) * chunks + 4 * ctx * chunks + 4096


def base_logits(base: str | os.PathLike, *, ctx: int = KLD_CTX, chunks: int = KLD_CHUNKS,
                threads: int | None = None, timeout: float = 3600, echo=None) -> Path:
    """The base's logits on the evaluation text, made once per (base sha256, text, ctx, chunks, build).

    Kept under ``<cache>/kld/`` beside a small JSON note of what it holds and its size. Before a new
    file is made, the free disk is checked against its expected size; afterwards the least recently
    used files are removed until the cache is under :func:`kld_cache_limit`.
    """
    import shutil

    from gl_plugins import __version__
    from gl_plugins.atomic import atomic_path, atomic_write
    from gl_plugins.digests import digest
    from gl_plugins.errors import InputError
    from gl_plugins.model.gguf_header import read_header
    from gl_plugins.toolchain.llamacpp import find_tool
    from gl_plugins.toolchain.texts import digest as text_digest, text_file

    limit = kld_cache_limit()  # a bad setting is reported before any work, cached file or not
    sha, _ = digest(base)
    version = _version(os.fspath(find_tool("llama-perplexity")))
    key_src = json.dumps([sha, text_digest("evaluation"), ctx, chunks, version, __version__])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    folder = _kld_dir()
    path = folder / f"{key}.kld"
    if path.exists():
        os.utime(path)
        return path
    h = read_header(base)
    tokens = h.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens) if tokens is not None else 0
    need = logits_bytes(n_vocab, ctx, chunks)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if n_vocab and free < need + (64 << 20):
        raise InputError(folder, f"has {free / 2**20:,.0f} MiB free; the base logits of {os.fspath(base)} "
                                 f"need about {need / 2**20:,.0f} MiB (free disk, or set GL_CACHE elsewhere)")
    threads = threads or default_threads()
    if echo:
        echo(f"base logits for {os.path.basename(os.fspath(base))}: {chunks} x {ctx} tokens of the evaluation "
             f"text, about {need / 2**20:,.0f} MiB ...")
    with atomic_path(path) as tmp:
        _run("llama-perplexity", ["-m", os.fspath(base), "-f", text_file("evaluation"), "-c", ctx,
                                  "--chunks", chunks, "-t", threads, "--kl-divergence-base", tmp], timeout)
    note = {"base": os.fspath(base), "sha256": sha, "ctx": ctx, "chunks": chunks, "bytes": path.stat().st_size,
            "text": text_digest("evaluation"), "llama_cpp": version}
    atomic_write(path.with_suffix(".json"), json.dumps(note, indent=1))
    _trim_kld_cache(keep=path, limit=limit)
    if echo:
        echo(f"base logits: {note['bytes'] / 2**20:,.0f} MiB in {path} "
             f"(cache {kld_cache_bytes() / 2**20:,.0f} of {limit / 2**20:,.0f} MiB)")
    return path


def kld_cache_bytes() -> int:
    return sum(p.stat().st_size for p in _kld_dir().glob("*.kld"))


def _trim_kld_cache(keep: Path, limit: int) -> None:
    files = sorted((p for p in _kld_dir().glob("*.kld") if p != keep), key=lambda p: p.stat().st_mtime)
    total = kld_cache_bytes()
    for p in files:
        if total <= limit:
            break
        total -= p.stat().st_size
        p.unlink(missing_ok=True)
        p.with_suffix(".json").unlink(missing_ok=True)


def kl_divergence(model: str | os.PathLike, base: str | os.PathLike, *, ctx: int = KLD_CTX,
                  chunks: int = KLD_CHUNKS, threads: int | None = None, timeout: float = 3600,
                  echo=None) -> KLDivergence:
    """KL divergence of ``model``'s token distributions from ``base``'s on the evaluation text."""
    logits = base_logits(base, ctx=ctx, chunks=chunks, threads=threads, timeout=timeout, echo=echo)
    threads = threads or default_threads()
    r = _run("llama-perplexity", ["-m", os.fspath(model), "--kl-divergence-base", logits, "--kl-divergence",
                                  "-t", threads], timeout)
    return parse_kld(r.stdout + r.stderr, chunks, ctx)


# ---------------------------------------------------------------- remembered results

def remembered(kind: str, model: str | os.PathLike, params: dict, compute):
    """``compute()`` once per (file content, params, llama.cpp build); a JSON-able result.

    The file is identified by its sha256 (from gl's digest cache), so a
    renamed or copied base model is not measured again.
    """
    from gl_plugins import __version__
    from gl_plugins.atomic import atomic_write
    from gl_plugins.digests import digest
    from gl_plugins.toolchain.llamacpp import cache_root, find_tool

    sha, _ = digest(model)
    tool = {"perplexity": "llama-perplexity"}.get(kind, "llama-completion")
    key_src = json.dumps([kind, sha, params, _version(os.fspath(find_tool(tool))), __version__], sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    path = cache_root() / "eval" / kind / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    atomic_write(path, json.dumps(value), parents=True)
    return value


@lru_cache(maxsize=8)
def _version(exe: str) -> str:
    from gl_plugins.toolchain.llamacpp import tool_version

    return tool_version(Path(exe))
