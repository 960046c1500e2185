"""Making an importance matrix: ``llama-imatrix`` on the calibration text, cached per model.

The text is gl's calibration slice of ``pydoc_data.topics`` (never the text
models are evaluated on; see :mod:`gl_plugins.toolchain.texts`). An imatrix
is made once per (model sha256, text, chunks, context, llama.cpp build) and
kept under ``<cache>/imatrix/``; ``make(..., out=FILE)`` also writes a copy
there, atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

CHUNKS = 8
CTX = 512


def make(model: str | os.PathLike, *, out: str | os.PathLike | None = None, chunks: int = CHUNKS,
         ctx: int = CTX, threads: int | None = None, timeout: float = 7200, echo=None) -> Path:
    """An imatrix of ``model`` on the calibration text (GGUF format); its cached path, or ``out``."""
    from gl_plugins import __version__
    from gl_plugins.atomic import atomic_path
    from gl_plugins.digests import digest
    from gl_plugins.toolchain.llama_eval import _run, _version
    from gl_plugins.toolchain.llamacpp import cache_root, default_threads, find_tool
    from gl_plugins.toolchain.texts import digest as text_digest, text_file

    sha, _ = digest(model)
    version = _version(os.fspath(find_tool("llama-imatrix")))
    key = hashlib.sha256(json.dumps([sha, text_digest("calibration"), chunks, ctx, version,
                                     __version__]).encode()).hexdigest()[:24]
    cached = cache_root() / "imatrix" / f"{key}.gguf"
    if not cached.exists():
        if echo:
            echo(f"computing an imatrix of {os.path.basename(os.fspath(model))} on {chunks} x {ctx} tokens of "
                 f"the calibration text ...")
        with atomic_path(cached, parents=True) as tmp:
            _run("llama-imatrix", ["-m", os.fspath(model), "-f", text_file("calibration"), "-c", ctx,
                                   "--chunks", chunks, "-t", threads or default_threads(), "-o", tmp, "--output-format", "gguf",
                                   "--no-ppl"], timeout)
    if out is None:
        return cached
    with atomic_path(out) as tmp:
        shutil.copyfile(cached, tmp)
    return Path(out)
