"""Finding and loading plugins: `[hooks] plugins` and the `callboard.plugins` entry points.

A plugin named in `[hooks] plugins` is a module path (`pkg.module`); it is
imported and its `register(plugin)` called. An installed distribution offers
one with an entry point::

    [project.entry-points."callboard.plugins"]
    my_plugin = "my_package.plugin"            # a module with register(plugin)
    other = "my_package.other:setup"           # or the function itself

Entry points are loaded unless `[hooks] entry_points = false`. Each plugin is
named by its module path or its entry point's name, and that name keys its
`[hooks.plugin.<name>]` table (`enabled = false` skips it without importing).

Every problem is collected before anything starts: a module that does not
import, a missing `register`, a `register` that raises, a table naming no
plugin. `load_plugins` raises one `PluginError` listing them all, each line
naming the plugin.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Final

from actors.config import LoadedConfig, PluginSettings
from actors.errors import PluginError
from actors.plugins.plugin import Plugin
from runtime import HookBus, Interceptor, Observer

__all__ = ["ENTRY_POINT_GROUP", "LoadedPlugins", "load_plugins"]

log = logging.getLogger("callboard.plugins")

ENTRY_POINT_GROUP: Final = "callboard.plugins"
REGISTER: Final = "register"
"""The function a plugin module defines."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    name: str
    origin: str
    load: Callable[[], object]


@dataclass(frozen=True, slots=True)
class LoadedPlugins:
    """The plugins of a config, loaded and registered (not yet attached to a bus).

    Attributes:
        plugins: in load order: `[hooks] plugins` first, then entry points.
        skipped: names disabled by `enabled = false`.
    """

    plugins: tuple[Plugin, ...] = ()
    skipped: tuple[str, ...] = ()

    def attach(self, bus: HookBus) -> list[Observer[Any] | Interceptor[Any]]:
        """Register every plugin's handlers on `bus`."""
        attached: list[Observer[Any] | Interceptor[Any]] = []
        for plugin in self.plugins:
            attached.extend(plugin.attach(bus))
        return attached

    def describe(self) -> list[str]:
        """A line per plugin, for `callboard check` and the startup log."""
        lines = [plugin.describe() for plugin in self.plugins]
        lines.extend(
            f"{name}: disabled ([hooks.plugin.{name}] enabled = false)" for name in self.skipped
        )
        return lines


def _import(module: str) -> Callable[[], object]:
    return lambda: importlib.import_module(module)


def _candidates(loaded: LoadedConfig, group: str) -> tuple[list[_Candidate], list[str]]:
    hooks = loaded.config.hooks
    found = [_Candidate(name, "config", _import(name)) for name in hooks.plugins]
    problems: list[str] = []
    if hooks.entry_points:
        seen = set(hooks.plugins)
        eps: Iterable[EntryPoint] = entry_points(group=group)
        for ep in sorted(eps, key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
            origin = f"entry point {ep.value} of {dist}"
            if ep.name in seen:
                problems.append(
                    f"plugin {ep.name}: two plugins have this name ({origin}, and another); "
                    "rename one, or disable entry points with [hooks] entry_points = false"
                )
                continue
            seen.add(ep.name)
            found.append(_Candidate(ep.name, origin, ep.load))
    return found, problems


def _register_fn(obj: object) -> Callable[[Plugin], object]:
    """The register function that `obj` (a module or a callable) stands for."""
    if isinstance(obj, ModuleType):
        register = getattr(obj, REGISTER, None)
        if register is None:
            raise LookupError(f"module {obj.__name__} has no {REGISTER}(plugin) function")
        obj = register
    if not callable(obj):
        raise TypeError(f"{obj!r} is not callable; expected {REGISTER}(plugin)")
    fn: Callable[[Plugin], object] = obj
    return fn


def load_plugins(loaded: LoadedConfig, *, group: str = ENTRY_POINT_GROUP) -> LoadedPlugins:
    """Import every plugin of `loaded` and call its `register`.

    Args:
        loaded: the config (`[hooks]`), and the state dir handed to plugins.
        group: the entry-point group searched.

    Raises:
        PluginError: one line per plugin that could not be loaded.
    """
    hooks = loaded.config.hooks
    candidates, problems = _candidates(loaded, group)
    plugins: list[Plugin] = []
    skipped: list[str] = []
    for candidate in candidates:
        settings = hooks.plugin.get(candidate.name, PluginSettings())
        if not settings.enabled:
            skipped.append(candidate.name)
            continue
        problem = _load_one(candidate, settings, loaded, plugins)
        if problem is not None:
            problems.append(problem)
    names = {c.name for c in candidates}
    for name in hooks.plugin:
        if name not in names:
            problems.append(
                f"hooks.plugin.{name}: no plugin of that name (plugins: "
                f"{', '.join(sorted(names)) or 'none'}; a module path in [hooks] plugins, "
                f"or an entry point of {group})"
            )
    if problems:
        raise PluginError(problems)
    return LoadedPlugins(tuple(plugins), tuple(skipped))


def _load_one(
    candidate: _Candidate, settings: PluginSettings, loaded: LoadedConfig, into: list[Plugin]
) -> str | None:
    """Load `candidate` into `into`; the problem, if it could not be."""
    name = candidate.name
    try:
        obj = candidate.load()
    except Exception as exc:
        log.debug("plugin %s failed to import", name, exc_info=True)
        return f"plugin {name}: cannot import it ({candidate.origin}): {type(exc).__name__}: {exc}"
    try:
        register = _register_fn(obj)
    except (LookupError, TypeError) as exc:
        return f"plugin {name}: {exc}"
    plugin = Plugin(name, origin=candidate.origin, settings=settings, state_dir=loaded.state_dir)
    try:
        register(plugin)
    except Exception as exc:
        log.error("plugin %s: register() failed", name, exc_info=True)
        return f"plugin {name}: register() failed: {type(exc).__name__}: {exc}"
    into.append(plugin)
    log.debug("plugin %s loaded: %s", name, plugin.describe())
    return None
