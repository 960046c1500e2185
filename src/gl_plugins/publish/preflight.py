"""What must hold before a variant is published: its GGUF exists, validation passed, its Modelfile lints.

:func:`ensure_built` builds a missing GGUF the way gl.toml declares (via
:mod:`gl_plugins.quantize`); :func:`validate` runs the validator plugins
(via :mod:`gl_plugins.validate`) and remembers the findings for an unchanged
file, so publishing the same file again does not re-run llama.cpp;
:func:`lint_declared` lints the Modelfile of every declared variant whose
GGUF exists (for ``gl check``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gl_plugins.atomic import atomic_write
from gl_plugins.errors import GLError, InputError
from gl_plugins.findings import Finding
from gl_plugins.project.config import Config, Variant


def _base_path(variant: Variant) -> Path | None:
    b = variant.build
    if b is None:
        return None
    if b.base_path is not None:
        return b.base_path
    from gl_plugins.toolchain.samples import local_model

    return local_model(b.base)


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def describe_build(variant: Variant) -> str:
    b = variant.build
    if b.floor is not None:
        how = "its floor (gl floor" + (f" {json.dumps(b.floor, sort_keys=True)}" if b.floor else "") + ")"
    else:
        how = (f"recipe {b.recipe}" + (f" {json.dumps(b.options, sort_keys=True)}" if b.options else "")
               if b.recipe else f"map {b.map} over {b.base_type}" if b.map else f"stock {b.base_type}")
    imatrix = f" with imatrix {b.imatrix}" if b.imatrix else ""
    guard = ", guarded by the stock type of nearest size" if b.guard else ""
    return f"{variant.gguf} from {b.base} by {how}{imatrix}{guard}"


def ensure_built(variant: Variant, echo, *, dry_run: bool = False):
    """Build the variant's GGUF when it is missing and gl.toml says how; GLError when it cannot."""
    if variant.gguf.is_file():
        return {"built": False, "describe": f"{variant.gguf} exists"}
    if variant.build is None:
        raise GLError(f"{variant.keypath}.gguf: file not found ({variant.gguf}), and the variant declares no build")
    plan = {"built": False, "describe": describe_build(variant)}
    if dry_run:
        return plan
    from gl_plugins.quantize.run import build_variant

    echo(f"building {plan['describe']}")
    b = variant.build
    variant.gguf.parent.mkdir(parents=True, exist_ok=True)
    result = build_variant(base=_base_path(variant), out=variant.gguf, recipe=b.recipe, options=b.options,
                           map_path=b.map, base_type=b.base_type, imatrix=b.imatrix, echo=echo,
                           where=f"{variant.keypath}.build", guard=b.guard, floor=b.floor)
    if not variant.gguf.is_file():
        raise GLError(f"building {variant.name} finished without writing {variant.gguf}")
    written = result.record.get("output") or {}
    if written.get("sha256") and written.get("bytes") == variant.gguf.stat().st_size:
        from gl_plugins import digests

        digests.remember(variant.gguf, written["sha256"])  # quantize hashed it already
    plan["built"] = True
    return plan


# ---------------------------------------------------------------- validation

def _validation_cache() -> Path:
    from gl_plugins.toolchain.llamacpp import cache_root

    return Path(os.environ.get("GL_VALIDATION_CACHE") or cache_root() / "validations")


def _validation_key(variant: Variant, validators: list[str]) -> str:
    from gl_plugins import __version__

    st = variant.gguf.stat()  # the file's identity: hard links and renames keep it, any write changes it
    base = _base_path(variant) if variant.build else None
    parts = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, __version__, sorted(validators),
             os.fspath(base) if base else None]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def validate(variant: Variant, echo) -> list[Finding]:
    """The validators' findings for the variant's GGUF (remembered for an unchanged file)."""
    from gl_plugins.host import collect

    validators = sorted(collect("gl_register_validators"))
    key = _validation_key(variant, validators)
    cached = _validation_cache() / f"{key}.json"
    try:
        entry = json.loads(cached.read_text())
        was = entry["path"]
        return [Finding(**{**d, "file": os.fspath(variant.gguf) if d.get("file") == was else d.get("file")})
                for d in entry["findings"]]
    except (OSError, ValueError, TypeError, KeyError):
        pass
    from gl_plugins.validate.run import validate_file

    echo(f"validating {variant.gguf.name} ({', '.join(validators) or 'no validators'})")
    base = _base_path(variant)
    if base is not None and not _is_gguf(base):
        base = None  # a config.json base: the provenance beside the file names the real source, if any
    report = validate_file(variant.gguf, base=base, echo=lambda name: echo(f"  {name}"))
    findings = list(report.findings)
    try:
        atomic_write(cached, parents=True, data=json.dumps({"path": os.fspath(variant.gguf),
                                         "findings": [x.to_dict() for x in findings]}))
    except (OSError, GLError):
        pass  # not remembered: the next publish validates again
    return findings


# ---------------------------------------------------------------- gl check

def lint_declared(cfg: Config) -> list[Finding]:
    """Modelfile findings of every variant whose GGUF exists, prefixed with the variant's key path."""
    from gl_plugins.modelfile.lint import chat_info
    from gl_plugins.publish.prepare import lint_variant, variant_modelfile

    out: list[Finding] = []
    for v in cfg.variants.values():
        if not v.gguf.is_file() or any(p.message.startswith(v.keypath) for p in cfg.problems):
            continue
        try:
            info = chat_info(v.gguf)
            mf, source, _ = variant_modelfile(v, v.gguf, info)
        except (InputError, GLError) as e:
            out.append(Finding("error", "config-modelfile", f"{v.keypath}: {e}", source="gl-check",
                               file=os.fspath(cfg.path)))
            continue
        for f in lint_variant(mf, info):
            if f.severity == "info":
                continue
            f.message = f"{v.keypath}: Modelfile ({source}): {f.message}"
            f.file, f.line = os.fspath(cfg.path), None
            out.append(f)
    return out
