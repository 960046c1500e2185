"""The plugin host: gl's built-ins and third-party plugins through one pluggy manager.

Takes the entry-point group ``gl`` and ``DEFAULT_PLUGINS``; gives the objects each registry hook
registered, and one way to use them that keeps a misbehaving plugin from breaking a command.
"""

from gl_plugins.host.manager import (DEFAULT_PLUGINS, PluginFailed, PluginProblem, call, collect,  # noqa: F401
                                     exit_status, get_manager, plugin_list, problems, report, reset)
