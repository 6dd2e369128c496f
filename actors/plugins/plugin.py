"""The plugin API: what a plugin's `register(plugin)` function is given.

A plugin is a Python module with one function, `register(plugin)`, which
declares its handlers with the decorators of `Plugin`::

    from actors.events import MESSAGE_SENDING, MODEL_RESPONSE, MessageSending, ModelResponse
    from actors.plugins import Plugin


    def register(plugin: Plugin) -> None:
        @plugin.on(MODEL_RESPONSE)
        async def count(event: ModelResponse) -> None:
            plugin.log.info("%s answered", event.result.model)

        @plugin.intercept(MESSAGE_SENDING)
        async def shout(event: MessageSending) -> MessageSending:
            return dataclasses.replace(event, text=event.text.upper())

Observers (`on`) watch: they run concurrently with the daemon and with each
other, each call under a time limit; `ordered=True` delivers a plugin's events
to it one at a time in the order they happened. Interceptors (`intercept`)
steer: they run in priority order, inside the emitter's path, and return a
replacement payload, `None` to keep it, or `Veto(reason)`. What the
`[hooks.plugin.<name>]` table sets (`timeout_s`, `fail_open`, `priority`)
overrides what the code asks for; `options` reaches the plugin as
`plugin.options`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, overload

from actors.config import PluginSettings
from actors.events import INTERCEPTABLE, MODEL_FAILOVER, ModelFailover
from runtime import HookBus, HookEvent, Interceptor, Observer, Veto

__all__ = ["Plugin", "Registration"]

P = TypeVar("P")
ObserverFn = Callable[[P], Awaitable[None]]
InterceptorFn = Callable[[P], Awaitable[P | Veto | None]]
FailoverFn = Callable[[ModelFailover], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Registration:
    """One handler a plugin declared.

    Attributes:
        event: the event it handles.
        handler: the async function.
        kind: observer or interceptor.
        timeout_s: the time limit the code asked for (None: the default).
        priority: an interceptor's place in the chain (lower runs first).
        fail_open: an interceptor's behaviour on its own failure.
        ordered: an observer on the plugin's lane.
    """

    event: HookEvent[Any]
    handler: Callable[[Any], Awaitable[Any]]
    kind: Literal["observer", "interceptor"]
    timeout_s: float | None
    priority: int
    fail_open: bool
    ordered: bool

    @property
    def handler_name(self) -> str:
        """The handler's qualified name, for logs."""
        return getattr(self.handler, "__qualname__", repr(self.handler))


class Plugin:
    """A loaded plugin: its name, its settings, and the handlers it declares.

    Attributes:
        name: the module path from `[hooks] plugins`, or the entry point's name.
        origin: where it came from, for messages.
        options: `[hooks.plugin.<name>] options`, read-only.
        state_dir: the daemon's `[state] dir`, for files the plugin keeps.
        log: a logger named `callboard.plugin.<name>`.
        registrations: what it declared, in order.
    """

    def __init__(
        self,
        name: str,
        *,
        origin: str,
        settings: PluginSettings,
        state_dir: Path,
    ) -> None:
        self.name = name
        self.origin = origin
        self.settings = settings
        self.options: Mapping[str, Any] = MappingProxyType(dict(settings.options))
        self.state_dir = state_dir
        self.log = logging.getLogger(f"callboard.plugin.{name}")
        self.registrations: list[Registration] = []

    # -- declaring handlers --------------------------------------------------------------

    def on(
        self, event: HookEvent[P], *, timeout_s: float | None = None, ordered: bool = False
    ) -> Callable[[ObserverFn[P]], ObserverFn[P]]:
        """Decorator: observe `event`.

        Args:
            event: one of `actors.events`.
            timeout_s: a call's time limit (default: `[hooks] timeout_s`).
            ordered: receive this plugin's events one at a time, in order.
        """

        def decorate(handler: ObserverFn[P]) -> ObserverFn[P]:
            self._add(Registration(event, handler, "observer", timeout_s, 0, True, ordered))
            return handler

        return decorate

    def intercept(
        self,
        event: HookEvent[P],
        *,
        priority: int = 0,
        fail_open: bool = True,
        timeout_s: float | None = None,
    ) -> Callable[[InterceptorFn[P]], InterceptorFn[P]]:
        """Decorator: intercept `event` (one of `model:select`, `model:failover`,
        `message:sending`).

        Args:
            event: the event.
            priority: lower runs first; ties run in registration order.
            fail_open: when the handler raises or times out, go on without it
                (True) or veto the event (False).
            timeout_s: a call's time limit (default: `[hooks] timeout_s`).
        """

        def decorate(handler: InterceptorFn[P]) -> InterceptorFn[P]:
            self._add(
                Registration(event, handler, "interceptor", timeout_s, priority, fail_open, False)
            )
            return handler

        return decorate

    @overload
    def on_model_failover(self, handler: FailoverFn) -> FailoverFn: ...

    @overload
    def on_model_failover(
        self, *, timeout_s: float | None = None, ordered: bool = False
    ) -> Callable[[FailoverFn], FailoverFn]: ...

    def on_model_failover(
        self,
        handler: FailoverFn | None = None,
        *,
        timeout_s: float | None = None,
        ordered: bool = False,
    ) -> FailoverFn | Callable[[FailoverFn], FailoverFn]:
        """Decorator, with or without arguments: called each time a request
        moves from one model to the next (`model:failover`, once the
        interceptors agreed), with `from_model`, `reason`, `detail`, `to_model`
        (None when the chain ran out) and the attempts so far.
        """
        decorate = self.on(MODEL_FAILOVER, timeout_s=timeout_s, ordered=ordered)
        if handler is not None:
            return decorate(handler)
        return decorate

    def _add(self, reg: Registration) -> None:
        event, handler, kind, timeout_s = reg.event, reg.handler, reg.kind, reg.timeout_s
        if not isinstance(event, HookEvent):
            raise TypeError(f"{kind} {handler!r}: {event!r} is not an event of actors.events")
        if kind == "interceptor" and event.name not in INTERCEPTABLE:
            raise TypeError(
                f"{event.name} can only be observed (interceptors run on "
                f"{', '.join(sorted(INTERCEPTABLE))})"
            )
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"{kind} of {event.name}: {getattr(handler, '__qualname__', handler)!r} "
                "must be an async function (async def)"
            )
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"{kind} of {event.name}: timeout_s must be > 0, not {timeout_s!r}")
        self.registrations.append(reg)

    # -- attaching -----------------------------------------------------------------------

    def attach(self, bus: HookBus) -> list[Observer[Any] | Interceptor[Any]]:
        """Register every declared handler on `bus`, with the config's overrides applied."""
        settings = self.settings
        attached: list[Observer[Any] | Interceptor[Any]] = []
        for reg in self.registrations:
            timeout_s = settings.timeout_s if settings.timeout_s is not None else reg.timeout_s
            name = f"{self.name}:{reg.handler_name}"
            if reg.kind == "observer":
                attached.append(
                    bus.observe(
                        reg.event,
                        reg.handler,
                        timeout_s=timeout_s,
                        name=name,
                        lane=f"plugin:{self.name}" if reg.ordered else None,
                    )
                )
            else:
                attached.append(
                    bus.intercept(
                        reg.event,
                        reg.handler,
                        priority=reg.priority if settings.priority is None else settings.priority,
                        fail_open=reg.fail_open
                        if settings.fail_open is None
                        else settings.fail_open,
                        timeout_s=timeout_s,
                        name=name,
                    )
                )
        return attached

    def describe(self) -> str:
        """One line: the plugin, where it came from, and what it handles."""
        handled = ", ".join(
            f"{r.event.name}{' (interceptor)' if r.kind == 'interceptor' else ''}"
            for r in self.registrations
        )
        return f"{self.name} [{self.origin}]: {handled or 'no handlers'}"
