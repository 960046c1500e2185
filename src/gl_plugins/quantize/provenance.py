"""Provenance: what ``gl quantize`` intended, stored beside the file it wrote.

``OUT.gguf`` gets ``OUT.gguf.gl.json``::

    {"format": 1, "gl_version": "...", "created": "2026-...Z",
     "output": {"path": "OUT.gguf", "bytes": N, "sha256": "..."},
     "source": {"path": "...", "bytes": N, "sha256": "..."},
     "imatrix": {"path": "...", "sha256": "..."} | null,
     "plan": plan_to_dict(plan), "tensor_map": "text of the --tensor-type-file",
     "command": ["llama-quantize", ...], "llama_cpp": "version",
     "predicted": {"bpw": 4.9, "bytes": N, "n_params": N, "fallbacks": 90},
     "measured": {"bpw": 4.9, "seconds": 3.1},
     "assignments": {"tensor": {"type": "Q4_K", "requested": "Q4_K", "reason": "rule 1: …"}}}

Validation reads it to know the plan; publishing reads it to know the
source. :func:`read` checks that it still describes the file beside it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from gl_plugins.errors import InputError

FORMAT = 1
SUFFIX = ".gl.json"


def path_for(gguf: str | os.PathLike) -> Path:
    p = Path(gguf)
    return p.with_name(p.name + SUFFIX)


def write(gguf: str | os.PathLike, record: dict) -> Path:
    """Write the provenance of ``gguf`` atomically; returns its path."""
    target = path_for(gguf)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, **record}, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(path: str | os.PathLike) -> dict:
    """A provenance file's content; InputError when it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(p, f"cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(p, f"is not valid JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("plan"), dict):
        raise InputError(p, f"is not a gl provenance file (format {FORMAT} with a plan)")
    assignments = data.get("assignments")
    if assignments is not None and not (isinstance(assignments, dict) and all(
            isinstance(v, dict) and isinstance(v.get("type"), str) for v in assignments.values())):
        raise InputError(p, "'assignments' must map tensor names to objects with a 'type'")
    return data


def read(gguf: str | os.PathLike) -> tuple[dict | None, str | None]:
    """(provenance, problem) for ``gguf``: (None, None) when there is none.

    A provenance whose recorded size or digest differs from the file is not
    returned; the problem says why.
    """
    p = path_for(gguf)
    if not p.exists():
        return None, None
    try:
        data = load(p)
    except InputError as e:
        return None, str(e)
    out = data.get("output") or {}
    size = os.path.getsize(gguf)
    if out.get("bytes") not in (None, size):
        return None, (f"{p} records {out.get('bytes')} bytes but {gguf} has {size}; it describes another "
                      f"file and is ignored")
    if out.get("sha256"):
        from gl_plugins.digests import digest

        sha, _ = digest(gguf)
        if sha != out["sha256"]:
            return None, f"{p} records another sha256 than {gguf} has; it describes another file and is ignored"
    return data, None
