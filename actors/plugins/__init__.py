"""Plugins: user code that watches and steers callboard through the hook bus.

A plugin is a module with `register(plugin)` (see `Plugin`), listed in
`[hooks] plugins` or installed under the `callboard.plugins` entry-point group.
Two examples ship here: `actors.plugins.usage_log` (a JSONL usage log) and
`actors.plugins.failover_notice` (tells the user which model answered and why).
"""

from actors.plugins.loader import ENTRY_POINT_GROUP, LoadedPlugins, load_plugins
from actors.plugins.plugin import Plugin, Registration

__all__ = ["ENTRY_POINT_GROUP", "LoadedPlugins", "Plugin", "Registration", "load_plugins"]
