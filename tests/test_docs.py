"""The docs keep step with the code: hooks, finding codes, links, and the plugin tutorial run verbatim.

As datasette does: every hook in hookspecs.py has a section in docs/plugins.md
headed by its exact signature, and a ``test_hook_<name>`` test somewhere in
tests/. Every finding code gl's source can emit is in docs/finding-codes.md,
and the tables there list no code the source no longer emits.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from finding_codes import source_codes
from gl_plugins import hookspecs
from plugin_docs import sections, tutorial
from test_predict_plugin import _layered_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
         if hasattr(fn, "gl_spec")]


def test_hookspecs_are_found():
    assert HOOKS == sorted(["gl_register_predictors", "gl_register_recipes", "gl_register_auditors",
                            "gl_register_validators", "gl_register_publishers", "gl_register_commands"])


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook):
    signature = f"{hook}{inspect.signature(getattr(hookspecs, hook))}"
    assert signature in sections(), f"docs/plugins.md has no section headed '## {signature}'"
    body = sections()[signature]
    for part in ("**Arguments.**", "**Returns.**", "```python", "@hookimpl", f"def {hook}("):
        assert part in body, f"the {hook} section lacks {part}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    assert re.search(rf"^def test_hook_{hook}\(", tests, re.M), f"no test_hook_{hook} in tests/"


def test_plugin_examples_import_only_the_public_api():
    import gl_plugins
    from plugin_docs import PLUGINS_MD, FENCE

    code = "\n".join(body for kind, body in FENCE.findall(PLUGINS_MD.read_text(encoding="utf-8"))
                     if kind == "python" or "cat > gl_predictor" in body)
    imports = re.findall(r"^\s*(?:from (gl_plugins[\w.]*) import ([\w, ]+)|import (gl_plugins[\w.]*))", code, re.M)
    assert imports, "the examples import nothing from gl"
    for module, names, plain in imports:
        assert module == "gl_plugins" and not plain, f"an example imports {module or plain}, not the public API"
        assert {n.strip() for n in names.split(",")} <= set(gl_plugins.__all__), names


def documented_codes() -> set[str]:
    text = (DOCS / "finding-codes.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M))


def test_every_finding_code_in_the_source_is_documented():
    emitted = source_codes()
    assert len(emitted) > 50  # the reader found the codes
    missing = {c: files for c, files in emitted.items() if c not in documented_codes()}
    assert not missing, f"codes emitted but not in docs/finding-codes.md: {missing}"


def test_no_documented_code_is_stale():
    stale = documented_codes() - set(source_codes())
    assert not stale, f"docs/finding-codes.md lists codes no source emits: {sorted(stale)}"


def test_the_architecture_page_lists_every_package_and_module():
    """docs/architecture.md's tree is the real one: every line names what exists, everything is named."""
    src = ROOT / "src" / "gl_plugins"
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    tree = text.split("## The tree", 1)[1].split("```")[1]
    listed: dict[str, str] = {}
    for line in tree.strip().splitlines():
        name, _, rest = line.partition(" ")
        listed[name] = rest
    packages = sorted(p.name + "/" for p in src.iterdir() if (p / "__init__.py").exists())
    top = sorted(p.name for p in src.glob("*.py"))
    assert sorted(n for n in listed if n.endswith(".py")) == top
    assert sorted(n for n in listed if n.endswith("/") and n not in ("data/", "modelfiles/")) == packages
    for package in packages:
        modules = {p.name for p in (src / package).glob("*.py")} - {"__init__.py"}
        named = set(re.findall(r"\b(\w+\.py)\b", listed[package])) - {"__init__.py"}
        assert named == modules, f"{package}: the page names {sorted(named)}, the package holds {sorted(modules)}"


@pytest.mark.parametrize("doc", ["plugins.md", "finding-codes.md", "guide.md", "architecture.md"])
def test_relative_links_resolve(doc):
    text = (DOCS / doc).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+?)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), f"{doc} links to {target}, which does not exist"


@pytest.mark.slow
def test_the_plugin_tutorial_works_verbatim(tmp_path):
    """Run every shell block of the tutorial, in order, in a fresh folder, as a reader would."""
    py = _layered_env(tmp_path / "venv")
    bin_dir = tmp_path / "bin"  # `pip` and `gl` as the reader has them, acting on that environment
    bin_dir.mkdir()
    (bin_dir / "pip").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{py}" '
                                 f'--disable-pip-version-check "$@"\n')
    (bin_dir / "gl").write_text(f'#!/bin/sh\nexec "{py}" -m gl_plugins "$@"\n')
    for tool in ("pip", "gl"):
        (bin_dir / tool).chmod(0o755)
    commands, expected = tutorial()
    script = "set -e\n" + "\n".join(commands)
    env = {k: v for k, v in os.environ.items() if k not in ("GL_PLUGINS", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.endswith(expected), f"gl plugins printed:\n{r.stdout}\nthe tutorial shows:\n{expected}"
    # what the reader wrote is the example package in the repository
    example = ROOT / "examples" / "predictor-plugin"
    for name in ("pyproject.toml", "gl_predictor_hidden256.py"):
        assert (work / "gl-predictor-hidden256" / name).read_text() == (example / name).read_text(), name
