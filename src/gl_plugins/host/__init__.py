"""The plugin host: gl's built-ins and third-party plugins through one pluggy manager.

Takes the entry-point group ``gl`` and ``DEFAULT_PLUGINS``; gives what each registry hook registered, checked
against its protocol, and :func:`call`/:func:`attribute`, through which a misbehaving plugin cannot break a command.
"""

from gl_plugins.host.manager import (DEFAULT_PLUGINS, PluginFailed, PluginProblem, exit_status, get_manager,
                                     normalise, problems, register, reset)
from gl_plugins.host.registry import (Registered, as_entry, attribute, call, collect, commands, description,
                                      options, plugin_list, registrations, report, touch)

__all__ = ["DEFAULT_PLUGINS", "PluginFailed", "PluginProblem", "Registered", "as_entry", "attribute", "call",
           "collect", "commands", "description", "exit_status", "get_manager", "normalise", "options",
           "plugin_list", "problems", "register", "registrations", "report", "reset", "touch"]
