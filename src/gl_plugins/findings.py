"""Findings: what auditors, validators and linters report, and how they are shown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

SEVERITIES = ("error", "warning", "info")  # most severe first
RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Finding:
    severity: str  # error | warning | info
    code: str  # stable, e.g. "imatrix-missing"; documented in docs/finding-codes.md
    message: str
    source: str = ""  # the plugin (validator, auditor, linter) that reported it
    tensor: str | None = None
    file: str | None = None
    line: int | None = None
    hint: str = ""
    evidence: str = ""

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where += f":{self.line}"
        head = f"{where}: " if where else ""
        tensor = f" [{self.tensor}]" if self.tensor else ""
        out = f"{head}{self.severity}: {self.code}{tensor}: {self.message}"
        if self.hint:
            out += f"\n    hint: {self.hint}"
        if self.evidence:
            out += "\n    evidence: " + self.evidence.replace("\n", "\n              ")
        return out


def has_errors(findings) -> bool:
    return any(f.severity == "error" for f in findings)


def exit_status(findings) -> int:
    """0 when clean (warnings allowed), 1 when any finding is an error."""
    return 1 if has_errors(findings) else 0


def by_severity(findings, then=None) -> list:
    """``findings`` most severe first (stable; ``then(finding)`` orders each severity further)."""
    return sorted(findings, key=lambda f: (RANK[f.severity], then(f)) if then else RANK[f.severity])


def summary(findings) -> str:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    return ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=_default)


def _default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)
