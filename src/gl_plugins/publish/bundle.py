"""The ``bundle`` publisher: an offline folder that ``ollama create NAME -f Modelfile`` turns into the model.

The folder holds the GGUF (a hard link when the file system allows, else a
copy), the rendered Modelfile with a relative FROM, ``create-request.json``
(the exact ``/api/create`` body gl would send) and ``SHA256SUMS``. Every file
is written to a temporary name and moved into place; files that already hold
the right bytes are left alone, so publishing twice changes nothing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from gl_plugins import digests
from gl_plugins.atomic import atomic_write
from gl_plugins.errors import GLError
from gl_plugins.hookspecs import hookimpl
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.modelfile.templates import compose
from gl_plugins.publish.prepare import PublishRequest, PublishResult

MODELFILE = "Modelfile"
REQUEST = "create-request.json"
SUMS = "SHA256SUMS"


def bundle_folder(req: PublishRequest) -> Path:
    if req.options.target:
        return Path(req.options.target).expanduser().absolute()
    parent = req.options.bundle_dir or Path.cwd() / "dist"
    return Path(parent) / f"{req.name.model}-{req.name.tag}"


def _write_text(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds it; True when written."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, data)
    return True


def _place_gguf(src: Path, dst: Path, digest: str) -> str:
    """Hard-link (or copy) the GGUF into the bundle; returns what was done."""
    if dst.exists():
        if os.path.samefile(src, dst):
            return "already linked"
        if dst.stat().st_size == src.stat().st_size and digests.digest(dst)[0] == digest:
            return "already present"
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        try:
            os.link(src, tmp)
            how = "hard-linked"
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(src, tmp)
            how = "copied"
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return how


class BundlePublisher:
    name = "bundle"
    description = "Write an offline folder (GGUF, Modelfile, create request, SHA256SUMS) for `ollama create`."

    def available(self, options) -> str | None:
        return None

    def render(self, req: PublishRequest) -> tuple[str, str]:
        """(Modelfile text with a relative FROM, create-request.json text)."""
        name = req.gguf.name
        mf = compose(req.modelfile, f"./{name}")
        header = (f"{req.name.short()}, written by gl publish.\n"
                  f"In this folder: ollama create {req.name.short()} -f {MODELFILE}")
        text = mfmod.render(mf, header=header)
        body = {**req.create, "files": {name: f"sha256:{req.digest}"}}
        return text, json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    def publish(self, req: PublishRequest) -> PublishResult:
        folder = bundle_folder(req)
        result = PublishResult(self.name, req.name.short(), os.fspath(folder))
        modelfile_text, request_text = self.render(req)
        files = [req.gguf.name, MODELFILE, REQUEST, SUMS]
        if req.options.dry_run:
            result.requests = [{"write": os.fspath(folder / f)} for f in files]
            result.files = {MODELFILE: modelfile_text, REQUEST: request_text}
            result.actions.append("dry run: nothing written")
            return result
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GLError(f"cannot create the bundle folder {folder} ({e.strerror})") from None
        how = _place_gguf(req.gguf, folder / req.gguf.name, req.digest)
        changed = how not in ("already linked", "already present")
        result.actions.append(f"{how} {req.gguf.name}")
        sums = {req.gguf.name: req.digest}
        for fname, text in ((MODELFILE, modelfile_text), (REQUEST, request_text)):
            if _write_text(folder / fname, text):
                changed = True
                result.actions.append(f"wrote {fname}")
            sums[fname] = digests.sha256_file(folder / fname)
        sums_text = "".join(f"{sums[f]}  {f}\n" for f in sorted(sums))
        if _write_text(folder / SUMS, sums_text):
            changed = True
            result.actions.append(f"wrote {SUMS}")
        result.files = {f: os.fspath(folder / f) for f in files}
        result.unchanged = not changed
        if not changed:
            result.actions = [f"bundle {folder} is up to date; nothing changed"]
        result.actions.append(f"to create the model: cd {folder} && ollama create {req.name.short()} -f {MODELFILE}")
        return result


@hookimpl(trylast=True)
def gl_register_publishers(register):
    register(BundlePublisher())
