"""SHA-256 of large files, remembered by (path, size, mtime) so an unchanged file is hashed once.

The cache is one small JSON file (``~/.cache/gl/digests.json``, or
``$GL_DIGEST_CACHE``), rewritten through a temporary file and ``os.replace``.
A changed size or modification time invalidates the entry; :func:`forget`
drops one when a server proves it wrong (digest mismatch).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gl_plugins.atomic import atomic_write
from gl_plugins.errors import GLError

CHUNK = 8 << 20
MAX_ENTRIES = 2000


def cache_file() -> Path:
    env = os.environ.get("GL_DIGEST_CACHE")
    if env:
        return Path(env)
    from gl_plugins.toolchain.llamacpp import cache_root

    return cache_root() / "digests.json"


def _key(path: Path) -> tuple[str, dict]:
    st = path.stat()
    return os.fspath(path.resolve()), {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(data: dict) -> None:
    target = cache_file()
    if len(data) > MAX_ENTRIES:
        data = dict(list(data.items())[-MAX_ENTRIES:])
    try:
        atomic_write(target, json.dumps(data), parents=True)
    except (OSError, GLError):
        pass  # a cache that cannot be written only costs a re-hash next time


def sha256_file(path: str | os.PathLike, progress=None) -> str:
    """Hex SHA-256 of a file, read in large chunks; ``progress(n)`` after each chunk."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            if progress:
                progress(n)
    return h.hexdigest()


def cached(path: str | os.PathLike) -> str | None:
    """The remembered digest of an unchanged file, or None."""
    key, stamp = _key(Path(path))
    entry = _load().get(key)
    if entry and entry.get("size") == stamp["size"] and entry.get("mtime_ns") == stamp["mtime_ns"]:
        return entry.get("sha256")
    return None


def digest(path: str | os.PathLike, progress=None) -> tuple[str, bool]:
    """(hex sha256, whether it came from the cache)."""
    p = Path(path)
    hit = cached(p)
    if hit:
        return hit, True
    key, stamp = _key(p)
    value = sha256_file(p, progress)
    if _key(p)[1] == stamp:  # the file did not change while it was read
        data = _load()
        data.pop(key, None)
        data[key] = {**stamp, "sha256": value}
        _save(data)
    return value, False


def remember(path: str | os.PathLike, sha256: str) -> None:
    """Record a digest computed elsewhere (e.g. by gl quantize, which hashes what it writes)."""
    key, stamp = _key(Path(path))
    data = _load()
    data.pop(key, None)
    data[key] = {**stamp, "sha256": sha256}
    _save(data)


def forget(path: str | os.PathLike) -> None:
    key = os.fspath(Path(path).resolve())
    data = _load()
    if data.pop(key, None) is not None:
        _save(data)
