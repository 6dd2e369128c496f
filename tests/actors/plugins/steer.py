"""A test plugin that steers: options choose what each of its handlers does.

Options (all optional):

* `sending`: `rewrite` (upper-cases the reply), `veto`, `hang`, `raise`;
* `failover`: `veto`, or `redirect:<model>`;
* `select`: `chain:<model>,<model>...`;
* `observer`: `hang` or `raise` (an observer of `message:received`);
* `sending_priority`: the priority of its `message:sending` interceptor.

`CALLS[<state dir>]` counts the calls of each handler.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import trio

from actors.events import (
    MESSAGE_RECEIVED,
    MESSAGE_SENDING,
    MODEL_FAILOVER,
    MODEL_SELECT,
    MessageReceived,
    MessageSending,
    ModelFailover,
    ModelSelect,
)
from actors.plugins import Plugin
from runtime import Veto

CALLS: dict[str, Counter[str]] = {}


class PluginFault(Exception):
    """What a `raise` handler raises."""


def register(plugin: Plugin) -> None:
    calls = CALLS.setdefault(str(plugin.state_dir), Counter())
    calls.clear()
    options = plugin.options

    if "sending" in options:
        mode = options["sending"]

        @plugin.intercept(MESSAGE_SENDING, priority=int(options.get("sending_priority", 0)))
        async def sending(event: MessageSending) -> MessageSending | Veto | None:
            calls["sending"] += 1
            if mode == "rewrite":
                return dataclasses.replace(event, text=event.text.upper())
            if mode == "veto":
                return Veto("not today")
            if mode == "hang":
                await trio.sleep_forever()
            raise PluginFault("the sending interceptor fell over")

    if "failover" in options:
        action = str(options["failover"])

        @plugin.intercept(MODEL_FAILOVER)
        async def failover(event: ModelFailover) -> ModelFailover | Veto:
            calls["failover"] += 1
            if action == "veto":
                return Veto("stay on the primary")
            return dataclasses.replace(event, to_model=action.removeprefix("redirect:"))

    if "select" in options:
        chain = tuple(str(options["select"]).removeprefix("chain:").split(","))

        @plugin.intercept(MODEL_SELECT)
        async def select(event: ModelSelect) -> ModelSelect:
            calls["select"] += 1
            return dataclasses.replace(event, chain=chain)

    if "observer" in options:
        behaviour = options["observer"]

        @plugin.on(MESSAGE_RECEIVED)
        async def observer(event: MessageReceived) -> None:
            calls["observer"] += 1
            if behaviour == "hang":
                await trio.sleep_forever()
            raise PluginFault("the observer fell over")
