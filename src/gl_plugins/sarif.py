"""Findings as SARIF 2.1.0, so CI code scanning can show them.

:func:`to_sarif` turns a list of :class:`~gl_plugins.findings.Finding` into one
SARIF log with one run: one rule per finding code (its level the most severe
one seen), one result per finding. A finding with a file gets a physical
location (file, and line when known), relative to the current folder when the
file lies inside it; a finding about a tensor also gets a logical location
naming the tensor. A finding without a file is placed on the command's main
input (``artifact``), because code scanning needs a file for every result; so is one whose
"file" is not a file (a rule given as ``--tensor-type``).

The commands that report findings print it with ``--format sarif``
(see :mod:`gl_plugins.cli.options`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from gl_plugins.findings import RANK

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
VERSION = "2.1.0"
SRCROOT = "%SRCROOT%"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}


def _location(file: str, base: Path) -> dict:
    path = Path(os.path.abspath(file))
    try:
        rel = path.relative_to(base)
    except ValueError:
        return {"uri": path.as_uri()}
    return {"uri": quote(rel.as_posix()), "uriBaseId": SRCROOT}


def _result(f, rule_index: int, artifact: str | None, base: Path) -> dict:
    text = f.message + (f"\nhint: {f.hint}" if f.hint else "")
    result: dict = {"ruleId": f.code, "ruleIndex": rule_index, "level": LEVELS[f.severity],
                    "message": {"text": text}}
    location: dict = {}
    own = f.file if f.file and os.path.isfile(f.file) else None  # not e.g. "--tensor-type"
    file = own or artifact
    if file:
        physical: dict = {"artifactLocation": _location(file, base)}
        if own and f.line is not None and f.line >= 1:
            physical["region"] = {"startLine": int(f.line)}
        location["physicalLocation"] = physical
    if f.tensor:
        location["logicalLocations"] = [{"name": f.tensor, "fullyQualifiedName": f.tensor, "kind": "object"}]
    if location:
        result["locations"] = [location]
    props = {k: v for k, v in (("source", f.source), ("tensor", f.tensor), ("hint", f.hint),
                                ("evidence", f.evidence)) if v}
    if props:
        result["properties"] = props
    return result


def to_sarif(findings, *, command: str, artifact: str | os.PathLike | None = None,
             base: str | os.PathLike | None = None) -> dict:
    """A SARIF 2.1.0 log for ``findings`` reported by ``command`` (e.g. ``"gl plan lint"``)."""
    from gl_plugins import __version__

    root = Path(os.path.abspath(base if base is not None else os.getcwd()))
    artifact = os.fspath(artifact) if artifact is not None else None
    rules: list[dict] = []
    index: dict[str, int] = {}
    worst: dict[str, str] = {}
    for f in findings:
        if f.code not in index:
            index[f.code] = len(rules)
            rule = {"id": f.code, "name": f.code,
                    "shortDescription": {"text": f"{f.code} ({f.source or command})"},
                    "defaultConfiguration": {"level": LEVELS[f.severity]}}
            if f.hint:
                rule["help"] = {"text": f.hint}
            rules.append(rule)
            worst[f.code] = f.severity
        elif RANK[f.severity] < RANK[worst[f.code]]:
            worst[f.code] = f.severity
            rules[index[f.code]]["defaultConfiguration"]["level"] = LEVELS[f.severity]
    results = [_result(f, index[f.code], artifact, root) for f in findings]
    run = {
        "tool": {"driver": {"name": "gl", "version": __version__, "semanticVersion": __version__,
                            "rules": rules}},
        "invocations": [{"executionSuccessful": True, "commandLine": command}],
        "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri() + "/"}},
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    return {"$schema": SCHEMA_URI, "version": VERSION, "runs": [run]}


def dumps(findings, **kw) -> str:
    """:func:`to_sarif` as indented JSON text."""
    return json.dumps(to_sarif(findings, **kw), indent=2, ensure_ascii=False)
