"""The plugin manager: built-ins and third-party plugins through one pluggy manager.

Plugins are loaded on first use, never at import time, so ``gl --help`` stays
fast. A third-party plugin that fails to import, or that implements a hook gl
does not define, is reported on stderr and left out; the CLI keeps working.
A plugin that raises inside a registry hook is reported with its name and
the hook, and the other plugins' registrations still count. A registered
object that raises while doing its work (a predictor's ``predict``, a
recipe's ``plan``, an auditor's ``audit``, a validator's ``validate``, a
publisher's ``publish``) is called through :func:`call`, which names the
plugin and the work; commands :func:`report` it, go on with the other
plugins, and let :func:`exit_status` say the run is incomplete.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
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
    "gl_plugins.plan.recipes",
    "gl_plugins.imatrix.coverage",
    "gl_plugins.validate.structure",
    "gl_plugins.validate.plan_match",
    "gl_plugins.validate.bpw",
    "gl_plugins.validate.loads",
    "gl_plugins.validate.generation",
    "gl_plugins.validate.perplexity",
    "gl_plugins.publish.ollama",
    "gl_plugins.publish.bundle",
)


@dataclass
class PluginProblem:
    plugin: str
    distribution: str | None
    hook: str | None
    error: str
    work: str | None = None  # e.g. "auditor 'x'.audit" when it failed doing its work, not registering

    def __str__(self) -> str:
        dist = f" (distribution {self.distribution})" if self.distribution else ""
        where = f" in {self.work}" if self.work else f" in hook {self.hook}" if self.hook else " while loading"
        return f"plugin {self.plugin!r}{dist} failed{where}: {self.error}"


class PluginFailed(GLError):
    """A plugin raised inside its work; the run goes on without its result but is incomplete (exit 1)."""

    exit_code = 1

    def __init__(self, problem: PluginProblem):
        self.problem = problem
        super().__init__(str(problem))


# the work each registry hook's objects do: method -> (what the object is, the hook that registers it)
WORK = {"predict": ("predictor", "gl_register_predictors"), "plan": ("recipe", "gl_register_recipes"),
        "audit": ("auditor", "gl_register_auditors"), "validate": ("validator", "gl_register_validators"),
        "publish": ("publisher", "gl_register_publishers")}


_pm: pluggy.PluginManager | None = None
problems: list[PluginProblem] = []
_dists: dict[str, str] = {}  # plugin name -> "dist version"


def _report(problem: PluginProblem) -> None:
    from gl_plugins.redaction import redact

    problems.append(problem)
    print(redact(f"gl: warning: {problem}"), file=sys.stderr)


def _allowed() -> set[str] | None:
    raw = os.environ.get("GL_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def get_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("gl")
    pm.add_hookspecs(hookspecs)
    for mod in DEFAULT_PLUGINS:
        pm.register(import_module(mod), name=mod)
    allowed = _allowed()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = f"{dist.name} {dist.version}" if dist else None
        if allowed is not None and ep.name not in allowed and (not dist or dist.name not in allowed):
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except BaseException as e:  # a broken plugin must not take the CLI down
            if isinstance(e, KeyboardInterrupt):
                raise
            _report(PluginProblem(ep.name, dist_name, None, f"{type(e).__name__}: {e}"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as e:
            _report(PluginProblem(ep.name, dist_name, None, f"{type(e).__name__}: {e}"))
            continue
        if dist_name:
            _dists[ep.name] = dist_name
    while True:  # a misspelt hook is an error: drop that plugin and say so
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin) or str(e.plugin)
            pm.unregister(e.plugin)
            _report(PluginProblem(name, _dists.pop(name, None), None, f"implements an unknown hook: {e}"))
    _pm = pm
    return pm


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing GL_PLUGINS)."""
    global _pm
    _pm = None
    problems.clear()
    _dists.clear()


def collect(hook_name: str) -> dict:
    """Call a registry hook on every plugin, isolating failures; returns name -> object."""
    pm = get_manager()
    caller = getattr(pm.hook, hook_name)
    found: dict = {}
    for impl in reversed(caller.get_hookimpls()):
        def register(obj, _plugin=impl.plugin_name):
            name = getattr(obj, "name", None)
            if not name:
                raise TypeError(f"{hook_name}: registered object {obj!r} has no name")
            if name not in found:
                obj.plugin = _plugin
                found[name] = obj
        try:
            impl.function(register=register)
        except Exception as e:
            _report(PluginProblem(impl.plugin_name, _dists.get(impl.plugin_name), hook_name,
                                  f"{type(e).__name__}: {e}"))
    return found


def plugin_list() -> list[dict]:
    """Name, version and hooks of every loaded plugin."""
    pm = get_manager()
    from gl_plugins import __version__

    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist = _dists.get(name)
        version = dist.split(" ", 1)[1] if dist else __version__
        out.append({"name": name, "version": version, "builtin": name in DEFAULT_PLUGINS,
                    "distribution": dist.split(" ", 1)[0] if dist else "gl-plugins", "hooks": hooks})
    return out


def call(obj, method: str, *args, passthrough: tuple = (), **kwargs):
    """``obj.method(*args, **kwargs)`` for an object a plugin registered, with its failures isolated.

    A returned generator is drained here, so a raise while iterating counts too. gl's own
    errors (GLError: bad input the plugin found and named) and ``passthrough`` exceptions pass
    unchanged; any other exception is recorded in :data:`problems` and raised as
    :class:`PluginFailed`, naming the plugin, its distribution, the object and its work.
    Commands that run several plugins catch it, :func:`report` it, and go on with the others.
    """
    try:
        result = getattr(obj, method)(*args, **kwargs)
        if inspect.isgenerator(result):
            result = list(result)
        return result
    except (GLError, *passthrough):
        raise
    except Exception as e:  # noqa: BLE001 - a third-party plugin may raise anything
        kind, hook = WORK.get(method, ("plugin object", None))
        plugin = getattr(obj, "plugin", None) or type(obj).__module__
        problem = PluginProblem(plugin, _dists.get(plugin), hook, f"{type(e).__name__}: {e}",
                                work=f"{kind} {getattr(obj, 'name', '?')!r}.{method}")
        problems.append(problem)
        raise PluginFailed(problem) from e


def report(failure: PluginFailed) -> None:
    """Say on stderr that a plugin failed; the command goes on with the other plugins."""
    from gl_plugins.redaction import redact

    print(redact(f"gl: error: {failure}; its results are left out"), file=sys.stderr)


def exit_status(status: int, *hooks: str) -> int:
    """``status``, raised to 1 when a plugin of ``hooks`` failed to load, register or work."""
    failed = [p for p in problems if p.hook is None or p.hook in hooks]
    if failed:
        print(f"gl: {len(failed)} plugin failure(s); the results above are incomplete", file=sys.stderr)
        return max(status, 1)
    return status
