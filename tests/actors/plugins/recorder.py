"""A test plugin: records every event of the catalogue, in the order it happened.

`RECORDS[<state dir>]` is the list of `(event name, payload)` of the daemon
whose `[state] dir` that is. Options: `interceptors = true` also records the
interceptor calls, as `("intercept " + name, payload)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors.events import CATALOGUE, INTERCEPTABLE
from actors.plugins import Plugin

RECORDS: dict[str, list[tuple[str, Any]]] = {}


def _recorder(records: list[tuple[str, Any]], name: str) -> Callable[[Any], Awaitable[None]]:
    async def record(payload: Any) -> None:
        records.append((name, payload))

    return record


def _interceptor(records: list[tuple[str, Any]], name: str) -> Callable[[Any], Awaitable[None]]:
    async def intercepted(payload: Any) -> None:
        records.append((f"intercept {name}", payload))

    return intercepted


def register(plugin: Plugin) -> None:
    records = RECORDS.setdefault(str(plugin.state_dir), [])
    records.clear()
    for event in CATALOGUE:
        plugin.on(event, ordered=True)(_recorder(records, event.name))
        if plugin.options.get("interceptors") and event.name in INTERCEPTABLE:
            plugin.intercept(event)(_interceptor(records, event.name))
