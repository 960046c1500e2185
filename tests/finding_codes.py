"""The stable finding codes gl's source emits, found by reading the source (AST), not by running it.

A code is a kebab-case string literal in a code position:

- the code argument of ``Finding(severity, code, …)`` or ``Finding(…, code=…)``;
- the second argument of any call whose first argument is a severity literal
  (the small ``_finding``/``add`` wrappers);
- the default of a parameter named ``code``, or a literal (or either branch of
  ``a if … else b``) assigned to a variable named ``code``;
- with ``code, … = TABLE[key]``, the first element of every value of the
  module-level dict ``TABLE``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "gl_plugins"
SEVERITIES = {"error", "warning", "info"}
CODE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")


def _literals(node) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        a, b = _literals(node.body), _literals(node.orelse)
        return a + b if a is not None and b is not None else None
    return None


def _is_severity(node) -> bool:
    values = _literals(node)
    return bool(values) and set(values) <= SEVERITIES


def _module_codes(tree: ast.Module) -> set[str]:
    found: list[str] = []
    tables = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
              for t in n.targets if isinstance(t, ast.Name)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            name = getattr(n.func, "id", None) or getattr(n.func, "attr", None)
            for k in n.keywords:
                if k.arg == "code":
                    found += _literals(k.value) or []
            if len(n.args) > 1 and (name == "Finding" or _is_severity(n.args[0])):
                found += _literals(n.args[1]) or []
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = n.args.args + n.args.kwonlyargs
            defaults = [None] * (len(n.args.args) - len(n.args.defaults)) + list(n.args.defaults) \
                + list(n.args.kw_defaults)
            for a, d in zip(args, defaults):
                if a.arg == "code" and d is not None:
                    found += _literals(d) or []
        elif isinstance(n, ast.Assign):
            for t in n.targets:
                if isinstance(t, ast.Name) and t.id == "code":
                    found += _literals(n.value) or []
                if isinstance(t, ast.Tuple) and isinstance(t.elts[0], ast.Name) and t.elts[0].id == "code" \
                        and isinstance(n.value, ast.Subscript) and isinstance(n.value.value, ast.Name) \
                        and n.value.value.id in tables:
                    for v in tables[n.value.value.id].values:
                        if isinstance(v, ast.Tuple) and v.elts:
                            found += _literals(v.elts[0]) or []
    return {c for c in found if CODE.match(c)}


def source_codes(src: Path = SRC) -> dict[str, list[str]]:
    """code -> the source files (relative to src/gl_plugins) that emit it."""
    out: dict[str, list[str]] = {}
    for path in sorted(src.rglob("*.py")):
        for code in _module_codes(ast.parse(path.read_text(encoding="utf-8"))):
            out.setdefault(code, []).append(path.relative_to(src).as_posix())
    return dict(sorted(out.items()))
