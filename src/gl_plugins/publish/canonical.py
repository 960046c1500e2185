"""The GGUF an Ollama server stores: gl runs the server's own rewrite first, so the digests agree.

From 0.30.0-rc16, ``/api/create`` passes every uploaded GGUF model layer through
``llama-quantize --allow-requantize IN OUT COPY`` and stores OUT, under OUT's
digest (server/create.go ``createModel`` -> ``copyLayerWithLlamaQuantize``;
the arguments are server/quantization.go ``llamaQuantizeArgs``). It skips
layers it re-quantizes in the same request and GGUFs holding compatibility
tensors (names starting ``a.``, ``mm.``, ``mtp.``, ``s.``, ``v.``;
``isEmbeddedCompatibilityTensor``). A file llama-quantize wrote comes back
byte-identical; others (gguf-py output, for one) come back with a changed
header, so the server would hold a digest gl never uploaded.

gl runs the same COPY with its own llama-quantize before hashing and
uploading. An identical result is remembered and the original uploaded; a
changed one is kept in ``canonical/<the original's sha256>/<its name>`` beside the
digest cache (``~/.cache/gl``) and uploaded instead. Either way a republish
finds the server's digest equal to gl's. Should a server's llama.cpp still
write other bytes, the publisher records that server's digest here (per server
URL), so the next publish of the same file to it is recognised as unchanged.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gl_plugins import digests
from gl_plugins.atomic import atomic_path, atomic_write
from gl_plugins.errors import GLError, InputError

COMPATIBILITY_PREFIXES = ("a.", "mm.", "mtp.", "s.", "v.")


@dataclass
class Canonical:
    path: Path  # the file to upload
    digest: str
    changed: bool  # COPY wrote other bytes than the original's
    seconds: float = 0.0  # 0 when remembered


def folder() -> Path:
    return digests.cache_file().parent / "canonical"


def _index_path() -> Path:
    return folder() / "index.json"


def _load() -> dict:
    try:
        data = json.loads(_index_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(data: dict) -> None:
    try:
        atomic_write(_index_path(), json.dumps(data, indent=1, sort_keys=True), parents=True)
    except (OSError, GLError):
        pass  # not remembered: the next publish runs COPY again


def rewritten_by_server(path: str | os.PathLike) -> bool:
    """Whether Ollama's create would COPY this GGUF (no compatibility tensors in it)."""
    from gl_plugins.model.gguf_header import read_header

    return not any(t.name.startswith(COMPATIBILITY_PREFIXES) for t in read_header(path).tensors)


def remembered(path: Path, digest: str) -> Canonical | None:
    """The canonical form of ``path`` (sha256 ``digest``) when an earlier COPY found it; None: not known."""
    entry = _load().get(digest) or {}
    if entry.get("same"):
        return Canonical(path, digest, False)
    kept = folder() / digest / path.name
    if entry.get("sha256") and kept.is_file() and digests.cached(kept) == entry["sha256"]:
        return Canonical(kept, entry["sha256"], True)
    return None


def canonical(path: Path, digest: str, echo=lambda m: None) -> Canonical:
    """The bytes Ollama's COPY turns ``path`` (sha256 ``digest``) into, as a file to upload."""
    known = remembered(path, digest)
    if known is not None:
        return known
    index = _load()
    entry = index.get(digest) or {}
    kept = folder() / digest / path.name
    from gl_plugins.toolchain.llamacpp import ToolError, run_tool

    echo(f"running llama-quantize --allow-requantize {path.name} COPY, as the server will at create")
    started = time.monotonic()
    try:
        with atomic_path(kept, parents=True) as tmp:
            try:
                run_tool("llama-quantize", ["--allow-requantize", path, tmp, "COPY"])
            except ToolError as e:
                raise GLError(f"{path}: llama-quantize cannot copy this GGUF ({e}); Ollama 0.30 and newer "
                              f"refuse it at create (failed to validate GGUF with llama-quantize)") from None
            new = digests.sha256_file(tmp)
            if new == digest:
                raise _Same
    except _Same:
        index[digest] = {**entry, "same": True}
        _save(index)
        return Canonical(path, digest, False, time.monotonic() - started)
    except InputError as e:
        raise GLError(f"cannot write the canonical copy of {path.name}: {e}") from None
    digests.remember(kept, new)
    index[digest] = {**entry, "sha256": new}
    _save(index)
    return Canonical(kept, new, True, time.monotonic() - started)


class _Same(Exception):
    """COPY gave the original's bytes: the temporary copy is dropped."""


def server_digest(digest: str, host: str) -> str | None:
    """The digest the server at ``host`` was seen to store for a GGUF of sha256 ``digest``, when it differed."""
    servers = (_load().get(digest) or {}).get("servers")
    return servers.get(host) if isinstance(servers, dict) else None


def remember_server_digest(digest: str, host: str, stored: str) -> None:
    index = _load()
    entry = index.setdefault(digest, {})
    if not isinstance(entry.get("servers"), dict):
        entry["servers"] = {}
    entry["servers"][host] = stored
    _save(index)
