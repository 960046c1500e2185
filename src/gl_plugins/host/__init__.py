"""The plugin host: gl's built-ins and third-party plugins through one pluggy manager.

Takes the entry-point group ``gl`` and ``DEFAULT_PLUGINS``; gives what each registry hook registered, checked
against its protocol, and :func:`call`/:func:`attribute`, through which a misbehaving plugin cannot break a command.
"""

from gl_plugins.host.manager import (DEFAULT_PLUGINS, PluginFailed, PluginProblem, exit_status,  # noqa: F401
                                     get_manager, normalise, problems, register, reset)
from gl_plugins.host.registry import (Registered, as_entry, attribute, call, collect, commands,  # noqa: F401
                                      description, options, plugin_list, registrations, report, touch)
