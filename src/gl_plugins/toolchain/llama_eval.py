"""Running a GGUF through llama.cpp: greedy completions and perplexity on a fixed text.

:func:`complete` runs ``llama-completion`` (greedy: ``--temp 0``, a token
limit, no conversation mode) and returns the generated text and whether it
ran to the limit. :func:`perplexity` runs ``llama-perplexity`` on a fixed
slice of Python's own ``pydoc_data.topics`` prose, in a few small chunks, so
a 270M model takes seconds. A model llama.cpp cannot load or run raises
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
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from gl_plugins.errors import ToolError
from gl_plugins.toolchain.llamacpp import default_threads

# prose topics of pydoc_data, in this order, cut at TEXT_CHARS characters
TEXT_TOPICS = ("execmodel", "exceptions", "naming")
TEXT_CHARS = 12000


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


def perplexity_text() -> str:
    """The fixed evaluation text: prose from Python's ``pydoc_data.topics``."""
    from pydoc_data import topics

    parts = [topics.topics[k] for k in TEXT_TOPICS if k in topics.topics]
    if not parts:
        parts = [topics.topics[k] for k in sorted(topics.topics)]
    return "\n\n".join(parts)[:TEXT_CHARS]


def _text_file() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    text = perplexity_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = cache_root() / "eval" / f"pydoc-topics-{digest}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


_FINAL = re.compile(r"Final estimate: PPL = ([\d.]+|nan|inf)(?: \+/- ([\d.]+|nan|inf))?", re.I)
_CHUNK = re.compile(r"\[(\d+)\]([\d.]+|nan|inf|-?nan)", re.I)


def perplexity(model: str | os.PathLike, *, ctx: int = 128, chunks: int = 8, threads: int | None = None,
               timeout: float = 600) -> Perplexity:
    """Perplexity of ``model`` on :func:`perplexity_text`, ``chunks`` chunks of ``ctx`` tokens."""
    threads = threads or default_threads()
    args = ["-m", os.fspath(model), "-f", _text_file(), "-c", ctx, "-b", ctx, "--chunks", chunks,
            "-t", threads, "--seed", 1]
    r = _run("llama-perplexity", args, timeout)
    out = r.stdout + r.stderr
    m = _FINAL.search(out)
    if not m:
        raise ModelRunError("llama-perplexity printed no final estimate (the text may be too short "
                            f"for {chunks} chunks of {ctx} tokens)", out)
    per_chunk = [float(v) for _, v in _CHUNK.findall(out)]
    return Perplexity(float(m[1]), float(m[2]) if m[2] else None, len(per_chunk) or chunks, ctx, per_chunk)


# ---------------------------------------------------------------- remembered results

def remembered(kind: str, model: str | os.PathLike, params: dict, compute):
    """``compute()`` once per (file content, params, llama.cpp build); a JSON-able result.

    The file is identified by its sha256 (from gl's digest cache), so a
    renamed or copied base model is not measured again.
    """
    from gl_plugins import __version__
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)
    return value


@lru_cache(maxsize=8)
def _version(exe: str) -> str:
    from gl_plugins.toolchain.llamacpp import tool_version

    return tool_version(Path(exe))
