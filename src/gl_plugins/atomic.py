"""Writing outputs safely: a temporary file beside the target, renamed over it on success.

An interrupted or failed write leaves the target as it was and no temporary
file behind (the temporary is removed on any exception, KeyboardInterrupt
included); a process killed outright leaves a ``.NAME.*.tmp`` that the next
write to the same target removes. Files get the usual permissions (0666 less
the umask), not the 0600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from gl_plugins.errors import InputError


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale(target: str | os.PathLike) -> None:
    """Remove temporaries a killed writer of ``target`` left behind."""
    target = Path(target)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, parents: bool = False) -> Iterator[Path]:
    """A temporary path beside ``target`` for a writer that takes a path (a tool, a package's
    ``write(path)``); on success it replaces ``target``, on any exception it is removed.

    The folder must exist unless ``parents`` (for caches) asks to create it."""
    target = Path(target)
    folder = target.parent
    try:
        if parents:
            folder.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise InputError(target, f"cannot be written ({e.strerror or e})") from None
    try:
        os.chmod(tmp, _umask_mode())
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "wb", parents: bool = False, **open_kw) -> Iterator[IO]:
    """An open temporary beside ``target`` (its ``.name`` is the temporary's path); on success
    it replaces ``target``. The folder must exist unless ``parents`` asks to create it."""
    with atomic_path(target, parents=parents) as tmp:
        with open(tmp, mode, **open_kw) as f:
            yield f


def atomic_write(target: str | os.PathLike, data: str | bytes, encoding: str = "utf-8",
                 parents: bool = False) -> None:
    """Write ``data`` to ``target`` atomically."""
    if isinstance(data, str):
        with atomic_file(target, "w", parents=parents, encoding=encoding, newline="") as f:
            f.write(data)
    else:
        with atomic_file(target, "wb", parents=parents) as f:
            f.write(data)
