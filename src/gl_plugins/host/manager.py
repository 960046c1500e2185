"""The plugin manager: built-ins and third-party plugins through one pluggy manager.

Plugins are loaded on first use, never at import time, so ``gl --help`` stays
fast. gl's own plugins are the feature modules in :data:`DEFAULT_PLUGINS`;
third-party ones come from the entry-point group ``gl``, restricted by
``GL_PLUGINS=a,b`` (entry-point or distribution names, ``_`` and ``-`` alike;
empty: built-ins only). A plugin that fails to import, or that implements a
hook gl does not define, is reported on stderr and left out; the CLI keeps
working. Every problem is kept in :data:`problems`, so ``gl plugins`` and the
commands' exit status can tell the truth about an incomplete set.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from importlib import import_module, metadata

import pluggy

from gl_plugins import hookspecs
from gl_plugins.errors import GLError

ENTRY_POINT_GROUP = "gl"
# gl's own plugins: the feature modules that hold a built-in and register it (called in this order)
DEFAULT_PLUGINS = (
    "gl_plugins.predict.ffn_ratio",
    "gl_plugins.predict.sliding_window",
    "gl_plugins.predict.kv_sharing",
    "gl_plugins.predict.shape_fallback",
    "gl_plugins.predict.quant_error",
    "gl_plugins.plan.recipes",
    "gl_plugins.imatrix.coverage",
    "gl_plugins.validate.structure",
    "gl_plugins.validate.plan_match",
    "gl_plugins.validate.bpw",
    "gl_plugins.validate.loads",
    "gl_plugins.validate.generation",
    "gl_plugins.validate.perplexity",
    "gl_plugins.validate.kld",
    "gl_plugins.publish.ollama",
    "gl_plugins.publish.bundle",
)


@dataclass
class PluginProblem:
    plugin: str
    distribution: str | None  # "name version", when the plugin came from one
    hook: str | None  # the hook it happened in; None: while loading
    error: str
    work: str | None = None  # e.g. "auditor 'x'.audit" when it failed doing its work, not registering
    refused: bool = False  # gl refused what it registered; ``error`` says what was wrong with it

    def __str__(self) -> str:
        who = f"plugin {self.plugin!r}" + (f" (distribution {self.distribution})" if self.distribution else "")
        if self.refused:
            return f"{who} {self.error}"
        where = f" in {self.work}" if self.work else f" in hook {self.hook}" if self.hook else " while loading"
        return f"{who} failed{where}: {self.error}"


class PluginFailed(GLError):
    """A plugin misbehaved in its work; the run goes on without its result but is incomplete (exit 1)."""

    exit_code = 1

    def __init__(self, problem: PluginProblem):
        self.problem = problem
        super().__init__(str(problem))


class Manager(pluggy.PluginManager):
    """pluggy's manager, forgetting what the registry hooks registered when the set of plugins changes."""

    def register(self, plugin, name=None):
        _state.registries.clear()
        _state.commands = None
        return super().register(plugin, name)

    def unregister(self, plugin=None, name=None):
        _state.registries.clear()
        _state.commands = None
        return super().unregister(plugin, name)


@dataclass
class _State:
    pm: Manager | None = None
    dists: dict = field(default_factory=dict)  # plugin name -> "distribution version"
    registries: dict = field(default_factory=dict)  # registry hook -> what registry.collect found
    commands: dict | None = None  # command name -> (click command, plugin name)
    in_process: list = field(default_factory=list)  # (name, plugin) registered by this process


_state = _State()
problems: list[PluginProblem] = []


def normalise(name: str) -> str:
    """Plugin and distribution names compare as packaging does: case, ``-``, ``_`` and ``.`` alike."""
    return re.sub(r"[-_.]+", "-", name).lower()


def warn(problem: PluginProblem) -> None:
    """Record a problem and say it on stderr (redacted: a plugin may quote a secret)."""
    from gl_plugins.redaction import redact

    problems.append(problem)
    print(redact(f"gl: warning: {problem}"), file=sys.stderr)


def distribution(plugin: str) -> str | None:
    """"name version" of the distribution a plugin came from (None for built-ins and in-process plugins)."""
    return _state.dists.get(plugin)


def _allowed() -> set[str] | None:
    raw = os.environ.get("GL_PLUGINS")
    if raw is None:
        return None
    return {normalise(p.strip()) for p in raw.split(",") if p.strip()}


def _dist_label(ep) -> str | None:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist else None


def _load_entry_points(pm: Manager) -> None:
    allowed = _allowed()
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    if allowed:
        known = {normalise(ep.name) for ep in eps} | {normalise(ep.dist.name) for ep in eps if ep.dist}
        for name in sorted(allowed - known):
            installed = ", ".join(sorted({ep.name for ep in eps})) or "none"
            print(f"gl: warning: GL_PLUGINS names {name!r}, which no installed plugin is called "
                  f"(installed: {installed})", file=sys.stderr)
    for ep in eps:
        dist_name = _dist_label(ep)
        if allowed is not None and normalise(ep.name) not in allowed and (
                not ep.dist or normalise(ep.dist.name) not in allowed):
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except BaseException as e:  # a broken plugin must not take the CLI down
            if isinstance(e, KeyboardInterrupt):
                raise
            warn(PluginProblem(ep.name, dist_name, None, f"{type(e).__name__}: {e}"))
            continue
        if dist_name:
            _state.dists[ep.name] = dist_name


def get_manager() -> Manager:
    """The plugin manager, with the built-ins and the allowed third-party plugins loaded."""
    if _state.pm is not None:
        return _state.pm
    pm = Manager("gl")
    pm.add_hookspecs(hookspecs)
    for mod in DEFAULT_PLUGINS:
        pm.register(import_module(mod), name=mod)
    for name, plugin in _state.in_process:
        try:
            pm.register(plugin, name=name)
        except Exception as e:  # noqa: BLE001 - e.g. a hook implementation with unknown arguments
            warn(PluginProblem(name, None, None, f"{type(e).__name__}: {e}"))
    _load_entry_points(pm)
    while True:  # a misspelt hook is an error: drop that plugin and say so
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin) or str(e.plugin)
            pm.unregister(e.plugin)
            warn(PluginProblem(name, _state.dists.pop(name, None), None, f"implements an unknown hook: {e}"))
    _state.pm = pm
    return pm


def register(plugin, name: str) -> None:
    """Add a plugin from this process (a program embedding gl, or a test): it joins the set the next
    time plugins load, after the built-ins and before the entry points, checked like any other."""
    _state.in_process.append((name, plugin))
    _state.pm = None
    _state.registries.clear()
    _state.commands = None


def reset() -> None:
    """Forget the loaded plugins, those registered in process, and their problems."""
    _state.pm = None
    _state.in_process.clear()
    _state.dists.clear()
    _state.registries.clear()
    _state.commands = None
    problems.clear()


def third_party_possible() -> bool:
    """Whether a plugin other than the built-ins may be loaded, known without loading any."""
    if _state.pm is not None:
        return any(name not in DEFAULT_PLUGINS for name, _ in _state.pm.list_name_plugin())
    return bool(_state.in_process) or bool(metadata.entry_points(group=ENTRY_POINT_GROUP))


def exit_status(status: int, *hooks: str) -> int:
    """``status``, raised to 1 when a plugin of ``hooks`` failed to load, register or work."""
    failed = [p for p in problems if p.hook is None or p.hook in hooks]
    if failed:
        print(f"gl: {len(failed)} plugin failure(s); the results above are incomplete", file=sys.stderr)
        return max(status, 1)
    return status
