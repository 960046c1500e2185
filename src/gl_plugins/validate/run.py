"""Validation of a quantized GGUF: run the validator plugins, collect findings and figures.

:func:`validate_file` is the one entry point (``gl validate``, ``gl
experiment`` and ``gl publish`` call it). Each validator gets a
:class:`ValidationContext`: the file, its header (read once), the base model,
the plan it should match (:class:`Expectation`), its settings (defaults
overridden per validator), and a ``figures`` dict to record measurements in
(``bpw``, ``perplexity``, ``base_perplexity`` …). A validator may raise
:class:`Skip` when it cannot judge (no base, file does not parse); a
validator that crashes becomes an error finding, so a broken plugin never
lets a file pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins.errors import GLError, InputError
from gl_plugins.findings import Finding, has_errors, summary

BUILTIN_ORDER = ("structure", "plan-match", "bpw", "loads", "generation", "perplexity", "kld")


class Skip(Exception):
    """Raised by a validator that cannot judge this file; the message says why."""


@dataclass
class Expectation:
    """What the file should hold, per tensor, and where that came from."""

    source: str  # "provenance X.gl.json", "plan map.txt" …
    types: dict[str, str]  # tensor -> expected final ggml type
    requested: dict[str, str] = field(default_factory=dict)  # tensor -> type before the shape fallback
    reasons: dict[str, str] = field(default_factory=dict)
    plan: object = None  # TensorPlan, when known
    predicted_bpw: float | None = None
    only_rules: bool = False  # a bare map: only tensors its rules decide are checked


@dataclass
class ValidationContext:
    path: Path
    base: Path | None = None
    expectation: Expectation | None = None
    provenance: dict | None = None
    options: dict = field(default_factory=dict)  # validator name -> {key: value}
    figures: dict = field(default_factory=dict)
    notes: list[Finding] = field(default_factory=list)  # findings about the inputs themselves
    _header: object = None
    _header_error: str | None = None
    _base_header: object = None

    @property
    def header(self):
        """The GGUF header, or None when the file does not parse (see ``header_error``)."""
        if self._header is None and self._header_error is None:
            from gl_plugins.model.gguf_header import read_header

            try:
                self._header = read_header(self.path)
            except InputError as e:
                self._header_error = str(e)
        return self._header

    @property
    def header_error(self) -> str | None:
        _ = self.header
        return self._header_error

    def require_header(self):
        h = self.header
        if h is None:
            raise Skip("the file does not parse as GGUF (see structure)")
        return h

    def require_base(self, why: str):
        if self.base is None:
            raise Skip(f"no base model to compare with ({why}); give --base")
        return self.base

    @property
    def base_header(self):
        if self._base_header is None and self.base is not None:
            from gl_plugins.model.gguf_header import read_header

            self._base_header = read_header(self.base)
        return self._base_header

    def settings(self, validator) -> dict:
        return {**getattr(validator, "defaults", {}), **self.options.get(validator.name, {})}


@dataclass
class ValidationReport:
    path: str
    passed: bool
    findings: list[Finding]
    figures: dict
    validators: list[str]

    def to_dict(self) -> dict:
        f = self.figures
        return {
            "file": self.path, "passed": self.passed,
            "validators": self.validators, "summary": summary(self.findings),
            "bpw": f.get("bpw"), "perplexity": f.get("perplexity"), "base_perplexity": f.get("base_perplexity"),
            "kld": f.get("kld"), "figures": f,
            "findings": [{"validator": x.source, "severity": x.severity, "code": x.code, "message": x.message,
                          "evidence": x.evidence, "tensor": x.tensor, "hint": x.hint} for x in self.findings],
        }


# ---------------------------------------------------------------- validators and options

def validators() -> dict:
    """Registered validators, built-ins first in their fixed order, then the others by name."""
    from gl_plugins.host import collect

    found = collect("gl_register_validators")
    order = [n for n in BUILTIN_ORDER if n in found] + sorted(n for n in found if n not in BUILTIN_ORDER)
    return {n: found[n] for n in order}


def select(found: dict, only) -> dict:
    if not only:
        return found
    names = [n.strip() for item in only for n in str(item).split(",") if n.strip()]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise GLError(f"unknown validator {unknown[0]!r}; known: {', '.join(found)}")
    return {n: v for n, v in found.items() if n in names}


def defaults_of(entry) -> dict:
    """A validator's settings with their default values (none when it declares none)."""
    from gl_plugins import host

    return dict(host.attribute(entry, "defaults", {}, returns=dict))


def parse_setting(text: str, found: dict) -> tuple[str, str, object]:
    """``validator.key=value`` -> (validator, key, value typed like the default)."""
    name_key, sep, raw = text.partition("=")
    name, dot, key = name_key.strip().rpartition(".")
    if not sep or not dot:
        raise GLError(f"setting {text!r} must look like VALIDATOR.KEY=VALUE, e.g. perplexity.max_ratio=1.3")
    if name not in found:
        raise GLError(f"setting {text!r}: unknown validator {name!r}; known: {', '.join(found)}")
    defaults = defaults_of(found[name])
    if key not in defaults:
        raise GLError(f"setting {text!r}: validator {name} has no setting {key!r}; its settings: "
                      + (", ".join(defaults) or "none"))
    return name, key, _typed(raw.strip(), defaults[key], text)


def _typed(raw: str, default, text: str):
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float) or default is None:
            return None if raw.lower() in ("", "none") else float(raw)
    except ValueError:
        kind = "true or false" if isinstance(default, bool) else type(default or 0.0).__name__
        raise GLError(f"setting {text!r}: {raw!r} is not a {kind}") from None
    return raw


def check_options(options: dict, found: dict) -> dict:
    """Per-validator option dicts checked against the validators' defaults."""
    out: dict = {}
    for name, values in (options or {}).items():
        if name not in found:
            raise GLError(f"options for unknown validator {name!r}; known: {', '.join(found)}")
        for key, value in (values or {}).items():
            if isinstance(value, str):
                value = parse_setting(f"{name}.{key}={value}", found)[2]
            elif key not in defaults_of(found[name]):
                parse_setting(f"{name}.{key}=", found)  # raises naming the valid settings
            out.setdefault(name, {})[key] = value
    return out


# ---------------------------------------------------------------- expectations

def expectation_from_provenance(record: dict, where: str) -> Expectation:
    from gl_plugins.plan.resolve import plan_from_dict

    plan = plan_from_dict(record["plan"], where)
    assigned = record.get("assignments") or {}
    return Expectation(
        source=f"provenance {where}",
        types={n: a["type"] for n, a in assigned.items()},
        requested={n: a.get("requested", a["type"]) for n, a in assigned.items()},
        reasons={n: a.get("reason", "") for n, a in assigned.items()},
        plan=plan, predicted_bpw=(record.get("predicted") or {}).get("bpw"))


def expectation_from_plan(plan, facts, where: str, only_rules: bool = False) -> Expectation:
    from gl_plugins.plan.resolve import resolve

    res = resolve(plan, facts)
    picked = [a for a in res.assignments if not only_rules or a.rule is not None]
    return Expectation(source=where, types={a.name: a.type for a in picked},
                       requested={a.name: a.requested for a in picked},
                       reasons={a.name: a.reason for a in picked}, plan=plan,
                       predicted_bpw=None if only_rules else res.bpw, only_rules=only_rules)


def load_expectation(plan_path: str | os.PathLike, quant: Path, header) -> Expectation:
    """An expectation from ``--plan``: a provenance ``.gl.json``, a plan JSON, or a tensor-type map.

    A bare map says nothing about the tensors its rules do not match (they
    get llama.cpp's mixture for the file type), so only the tensors a rule
    decides are checked; the base type is the file's own ``general.file_type``.
    """
    from gl_plugins.facts import facts_from_gguf
    from gl_plugins.ggml_types import ftype_name
    from gl_plugins.plan.resolve import TensorPlan, plan_from_dict
    from gl_plugins.plan.sources import plan_document, read_plan_json

    p = Path(plan_path)
    if not p.is_file():
        raise InputError(p, "file not found")
    if header is None:
        raise InputError(quant, "does not parse as GGUF, so it cannot be held against a plan")
    facts = facts_from_gguf(quant)
    if p.name.endswith(".json"):
        from gl_plugins.quantize import provenance

        data = read_plan_json(p)
        if isinstance(data, dict) and "format" in data and "assignments" in data:
            return expectation_from_provenance(provenance.load(p), os.fspath(p))
        return expectation_from_plan(plan_from_dict(plan_document(data), os.fspath(p)), facts, f"plan {p}")
    from gl_plugins.plan.resolve import Rule
    from gl_plugins.plan.tensor_map import read_map

    rules = [Rule(r.written, r.type_written) for r in read_map(p)]
    base = ftype_name(header.get("general.file_type"))
    if base is None or base.startswith("ftype#"):
        raise InputError(quant, f"has general.file_type {header.get('general.file_type')!r}, which gl cannot "
                                f"use as the base type for the map {p}")
    return expectation_from_plan(TensorPlan(base_type=base, rules=rules), facts, f"map {p}", only_rules=True)


# ---------------------------------------------------------------- running

def validate_file(path: str | os.PathLike, base: str | os.PathLike | None = None,
                  plan: str | os.PathLike | None = None, only=None, options: dict | None = None,
                  echo=None) -> ValidationReport:
    """Run the validators on ``path``; ``plan`` is a map, plan JSON or provenance file.

    Without ``plan`` the provenance beside the file (``FILE.gl.json``) is the
    plan; without ``base`` the provenance's source, when it still exists.
    ``options`` maps a validator name to settings overriding its defaults.
    ``echo(text)`` is told which validator runs (progress for long runs).
    """
    from gl_plugins.quantize import provenance

    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a folder, not a GGUF file")
    found = validators()
    chosen = select(found, only)
    ctx = ValidationContext(path=p, options=check_options(options or {}, found))
    record, problem = provenance.read(p) if ctx.header is not None else (None, None)
    if problem:
        ctx.notes.append(Finding("warning", "provenance-stale", problem, source="validate", file=os.fspath(p)))
    ctx.provenance = record
    if base is not None:
        from gl_plugins.toolchain.samples import local_model

        ctx.base = local_model(base)
        if not ctx.base.is_file():
            raise InputError(ctx.base, "base model not found")
    elif record and (record.get("source") or {}).get("path"):
        src = Path(record["source"]["path"])
        if src.is_file():
            ctx.base = src
        else:
            ctx.notes.append(Finding("info", "provenance-base-missing",
                                     f"the source recorded in the provenance ({src}) no longer exists; "
                                     f"comparisons with the base are skipped", source="validate"))
    if plan is not None:
        ctx.expectation = load_expectation(plan, p, ctx.header)
    elif record is not None:
        ctx.expectation = expectation_from_provenance(record, os.fspath(provenance.path_for(p)))

    findings: list[Finding] = list(ctx.notes)
    for name, v in chosen.items():
        if echo:
            echo(name)
        findings += _run_one(name, v, ctx)
    report = ValidationReport(os.fspath(p), not has_errors(findings), findings, ctx.figures, list(chosen))
    return report


def _run_one(name: str, validator, ctx: ValidationContext) -> list[Finding]:
    from gl_plugins import host

    try:
        out = host.call(validator, "validate", ctx, passthrough=(Skip,), items=Finding)
    except Skip as e:
        return [Finding("info", "validator-skipped", f"{name} skipped: {e}", source=name)]
    except host.PluginFailed as e:  # a crashing validator must not let a file pass
        host.report(e)
        return [Finding("error", "validator-failed", str(e), source=name,
                        hint="report this to the plugin's authors; the file was not judged by it")]
    for f in out:
        if not f.source:
            f.source = name
    return out
