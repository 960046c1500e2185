"""What the plugins registered, and the one way gl touches a registered object.

:func:`collect` calls a registry hook on every plugin once and keeps what each
registered: name -> :class:`Registered` (the object and the plugin that
registered it; the object itself is never written to, so a frozen dataclass
registers fine). An object is checked against its kind's protocol
(:mod:`gl_plugins.host.protocols`) when it is registered; one that lacks a
member is refused with a sentence naming the plugin and the member. The first
registration of a name wins; built-ins register last, so a third-party
object of the same name replaces a built-in, and that is recorded.

Everything gl does with a registered object, reading an attribute
(``options``, ``defaults``, ``description``) or calling a method
(``predict``, ``plan``, ``audit``, ``validate``, ``available``, ``publish``),
goes through :func:`touch` (via :func:`attribute` and :func:`call`): whatever
the object raises or returns of the wrong type becomes
:class:`~gl_plugins.host.manager.PluginFailed`, naming the plugin, its
distribution and the work. Commands that run several plugins :func:`report`
it and go on with the others; the exit status says the run is incomplete.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import dataclass, field

from gl_plugins.errors import GLError
from gl_plugins.host import protocols
from gl_plugins.host.manager import (DEFAULT_PLUGINS, PluginFailed, PluginProblem, _state, distribution,
                                     get_manager, problems, warn)

_REQUIRED = object()


@dataclass(frozen=True)
class Registered:
    """An object a plugin registered, and who registered it."""

    name: str
    obj: object
    plugin: str  # the plugin (entry-point name, or built-in module) that registered it
    kind: str = "plugin object"  # predictor, recipe, auditor, validator, publisher
    replaced: str | None = None  # the built-in plugin whose object of this name it replaced
    options: dict = field(default_factory=dict, compare=False)  # option values for its work method

    @property
    def builtin(self) -> bool:
        return self.plugin in DEFAULT_PLUGINS

    def with_options(self, **options) -> "Registered":
        """The same object, called with these option values (a predictor's declared options)."""
        return dataclasses.replace(self, options={**self.options, **options})


@dataclass
class Registration:
    """One call of ``register`` by a plugin, and what gl made of it (for ``gl plugins``)."""

    hook: str
    plugin: str
    name: str | None
    outcome: str  # "registered", "replaces a built-in", "replaced", "ignored", "refused"
    other: str | None = None  # the plugin it replaced, was replaced by, or was ignored in favour of


def as_entry(obj) -> Registered:
    """``obj`` as a registry entry: itself when it is one, else credited to its module (library use)."""
    if isinstance(obj, Registered):
        return obj
    return Registered(str(getattr(obj, "name", "?")), obj, type(obj).__module__)


def _refuse(hook: str, plugin: str, log: list, error: str, name: str | None = None) -> None:
    warn(PluginProblem(plugin, distribution(plugin), hook, error, refused=True))
    log.append(Registration(hook, plugin, name, "refused"))


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def collect(hook: str) -> dict[str, Registered]:
    """Call a registry hook on every plugin (once per loaded set); name -> what was registered."""
    if hook in _state.registries:
        return _state.registries[hook][0]
    pm = get_manager()
    kind, protocol = protocols.KINDS[hook]
    found: dict[str, Registered] = {}
    log: list[Registration] = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):  # the order pluggy calls them in
        plugin = impl.plugin_name

        def register(obj, _plugin=plugin):
            try:
                name = getattr(obj, "name", None)
            except Exception as e:  # noqa: BLE001 - a property of a third-party object
                return _refuse(hook, _plugin, log, f"registered {_a(kind)} whose name raised "
                                                   f"{type(e).__name__}: {e}, so it is left out")
            if not isinstance(name, str) or not name:
                return _refuse(hook, _plugin, log, f"registered {_a(kind)} without a name "
                                                   f"({type(obj).__name__}), so it is left out")
            lacking = protocols.missing(obj, protocol)
            if lacking:
                needs = ", ".join(protocols.members(protocol))
                return _refuse(hook, _plugin, log, f"registered {kind} {name!r} without {' or '.join(lacking)} "
                                                   f"({_a(kind)} has {needs}), so it is left out", name)
            first = found.get(name)
            if first is None:
                found[name] = Registered(name, obj, _plugin, kind)
                log.append(Registration(hook, _plugin, name, "registered"))
            elif _plugin in DEFAULT_PLUGINS and not first.builtin:
                found[name] = dataclasses.replace(first, replaced=_plugin)
                log.append(Registration(hook, _plugin, name, "replaced", first.plugin))
                for r in log:
                    if r.plugin == first.plugin and r.name == name:
                        r.outcome, r.other = "replaces a built-in", _plugin
            else:
                log.append(Registration(hook, _plugin, name, "ignored", first.plugin))

        try:
            impl.function(register=register)
        except Exception as e:  # noqa: BLE001 - a third-party hook may raise anything
            warn(PluginProblem(plugin, distribution(plugin), hook, f"{type(e).__name__}: {e}"))
    _state.registries[hook] = (found, log)
    return found


def registrations(hook: str) -> list[Registration]:
    """What every plugin registered through ``hook``, in call order (calls the hook if need be)."""
    collect(hook)
    return _state.registries[hook][1]


# ---------------------------------------------------------------- touching a registered object

def _fail(entry: Registered, member: str, error: str) -> PluginFailed:
    problem = PluginProblem(entry.plugin, distribution(entry.plugin), _hook_of(entry.kind), error,
                            work=f"{entry.kind} {entry.name!r}.{member}")
    problems.append(problem)
    return PluginFailed(problem)


def _hook_of(kind: str) -> str | None:
    return next((h for h, (k, _) in protocols.KINDS.items() if k == kind), None)


def _type_name(t) -> str:
    names = [x.__name__ if x is not type(None) else "None" for x in (t if isinstance(t, tuple) else (t,))]
    return " or ".join(names)


def touch(entry: Registered, member: str, use, *, passthrough: tuple = (), returns=None, items=None):
    """``use(getattr(entry.obj, member))``, isolated: the one way gl touches a plugin's object.

    A returned generator is drained here, so a raise while iterating counts too. gl's own errors
    (GLError: bad input the plugin found and named) and ``passthrough`` exceptions pass unchanged;
    anything else raised, a result that is not ``returns`` (a type or tuple of types), or, with
    ``items``, not a list of ``items`` (None counts as empty) raises :class:`PluginFailed`.
    """
    try:
        result = use(getattr(entry.obj, member))
        if inspect.isgenerator(result):
            result = list(result)
    except (GLError, *passthrough):
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a third-party plugin may raise anything
        raise _fail(entry, member, f"{type(e).__name__}: {e}") from e
    if items is not None:
        result = [] if result is None else result
        if not isinstance(result, (list, tuple)) or not all(isinstance(x, items) for x in result):
            what = type(result).__name__ if not isinstance(result, (list, tuple)) else \
                "a list holding " + ", ".join(sorted({type(x).__name__ for x in result if not isinstance(x, items)}))
            raise _fail(entry, member, f"returned {what}, not a list of {_type_name(items)}")
        return list(result)
    if returns is not None and not isinstance(result, returns):
        raise _fail(entry, member, f"returned {type(result).__name__}, not {_type_name(returns)}")
    return result


def call(entry, method: str, *args, passthrough: tuple = (), returns=None, items=None, **kwargs):
    """``entry.obj.method(*args, **entry.options, **kwargs)`` through :func:`touch`."""
    entry = as_entry(entry)
    return touch(entry, method, lambda fn: fn(*args, **entry.options, **kwargs), passthrough=passthrough,
                 returns=returns, items=items)


def attribute(entry, name: str, default=_REQUIRED, *, returns=None):
    """``entry.obj.name`` through :func:`touch`; ``default`` when the object does not have it."""
    entry = as_entry(entry)
    if default is not _REQUIRED and not _has(entry.obj, name):
        return default
    return touch(entry, name, lambda value: value, returns=returns)


def _has(obj, name: str) -> bool:
    try:
        inspect.getattr_static(obj, name)
        return True
    except AttributeError:
        return False


def options(entry) -> list:
    """The ``click.Option`` list a recipe (or predictor) declares; none when it declares none."""
    import click

    entry = as_entry(entry)
    found = attribute(entry, "options", [], returns=(list, tuple))
    bad = [o for o in found if not isinstance(o, click.Option)]
    if bad:
        raise _fail(entry, "options", f"holds {type(bad[0]).__name__}, not click.Option")
    return list(found)


def description(entry) -> str:
    return str(attribute(entry, "description", ""))


def report(failure: PluginFailed) -> None:
    """Say on stderr that a plugin failed; the command goes on with the other plugins."""
    from gl_plugins.redaction import redact

    print(redact(f"gl: error: {failure}; its results are left out"), file=sys.stderr)


# ---------------------------------------------------------------- commands and the listing

def commands(reserved=()) -> dict:
    """Extra subcommands from ``gl_register_commands``: name -> (click command, plugin).

    Asked only when a third-party plugin may be installed, so ``gl --help`` stays fast. A command
    with a ``reserved`` name (one of gl's own) is left out.
    """
    if _state.commands is not None:
        return _state.commands
    import click

    out: dict = {}
    if third_party := _third_party_possible():
        pm = get_manager()
        for impl in reversed(pm.hook.gl_register_commands.get_hookimpls()):
            group = click.Group()
            try:
                impl.function(cli=group)
            except Exception as e:  # noqa: BLE001 - a third-party hook may raise anything
                warn(PluginProblem(impl.plugin_name, distribution(impl.plugin_name), "gl_register_commands",
                                   f"{type(e).__name__}: {e}"))
            for name, cmd in group.commands.items():
                if name not in reserved and name not in out:
                    out[name] = (cmd, impl.plugin_name)
    if third_party or _state.pm is not None:
        _state.commands = out
    return out


def _third_party_possible() -> bool:
    from gl_plugins.host.manager import third_party_possible

    return third_party_possible()


def plugin_list(reserved=()) -> list[dict]:
    """Every loaded plugin: name, version, distribution, hooks, and what it registered through each
    (``reserved``: the command names gl keeps for itself, see :func:`commands`)."""
    from gl_plugins import __version__

    pm = get_manager()
    logs = {hook: registrations(hook) for hook in protocols.KINDS}
    cmds = commands(reserved)
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: (p[0] not in DEFAULT_PLUGINS, p[0])):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist = distribution(name)
        registered: dict = {}
        for hook in hooks:
            if hook == "gl_register_commands":
                registered[hook] = [{"name": c, "outcome": "registered"} for c, (_, p) in cmds.items() if p == name]
                continue
            registered[hook] = [{"name": r.name, "outcome": r.outcome, **({"other": r.other} if r.other else {})}
                                for r in logs[hook] if r.plugin == name]
        version = dist.split(" ", 1)[1] if dist else (__version__ if name in DEFAULT_PLUGINS else None)
        out.append({"name": name, "version": version,
                    "builtin": name in DEFAULT_PLUGINS,
                    "distribution": dist.split(" ", 1)[0] if dist else ("gl-plugins" if name in DEFAULT_PLUGINS
                                                                        else None),
                    "hooks": hooks, "registered": registered})
    return out
