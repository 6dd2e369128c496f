"""Fixtures and controllable children for the runtime's tests."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trio

from runtime import (
    ChildContext,
    ChildShutdown,
    ChildSpec,
    DeadLetters,
    HookBus,
    InflightTracker,
    Registry,
    Restart,
    Supervisor,
    SupervisorPolicy,
    SystemServices,
)


class StartError(Exception):
    """What a probe raises when told to fail its start."""


class Crash(Exception):
    """What a probe raises when told to crash."""


@dataclass
class Trace:
    """An ordered record of what the children did."""

    events: list[str] = field(default_factory=list)

    def add(self, event: str) -> None:
        self.events.append(event)

    def take(self) -> list[str]:
        taken, self.events = self.events, []
        return taken


class Probe:
    """A child whose life a test drives: start, crash, exit, ignore stop requests.

    Each start appends `start <name>` to the trace; each end appends
    `stop <name>` (asked to stop), `exit <name>` (on its own) or
    `killed <name>` (cancelled).
    """

    def __init__(
        self,
        trace: Trace,
        name: str,
        *,
        fail_starts: int = 0,
        ignore_start: bool = False,
        ignore_stop: bool = False,
        stop_takes_s: float = 0.0,
    ) -> None:
        self.trace = trace
        self.name = name
        self.fail_starts = fail_starts
        self.ignore_start = ignore_start
        self.ignore_stop = ignore_stop
        self.stop_takes_s = stop_takes_s
        self.starts = 0
        self.running = False
        self._order: trio.MemorySendChannel[str] | None = None

    def spec(self, restart: Restart = Restart.PERMANENT, shutdown_s: float = 1.0) -> ChildSpec:
        return ChildSpec(name=self.name, start=self.start, restart=restart, shutdown_s=shutdown_s)

    async def start(self, ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        self.starts += 1
        self.trace.add(f"start {self.name}")
        if self.fail_starts:
            self.fail_starts -= 1
            raise StartError(f"{self.name} refuses to start")
        if self.ignore_start:
            return
        send, receive = trio.open_memory_channel[str](math.inf)
        self._order = send
        self.running = True
        task_status.started()
        ended = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stop_watch, ctx, send)
                order = await receive.receive()
                nursery.cancel_scope.cancel()
            ended = True
            if order == "crash":
                self.trace.add(f"crash {self.name}")
                raise Crash(f"{self.name} crashed")
            if order == "shutdown":
                self.trace.add(f"exit {self.name} shutdown")
                raise ChildShutdown
            if order == "stop":
                ended = False
                if self.stop_takes_s:
                    await trio.sleep(self.stop_takes_s)
                ended = True
                self.trace.add(f"stop {self.name}")
                return
            self.trace.add(f"exit {self.name}")
        finally:
            if not ended:
                self.trace.add(f"killed {self.name}")
            self.running = False
            self._order = None

    async def _stop_watch(self, ctx: ChildContext, send: trio.MemorySendChannel[str]) -> None:
        await ctx.wait_stop_requested()
        if not self.ignore_stop:
            send.send_nowait("stop")

    def order(self, what: str) -> None:
        assert self._order is not None, f"{self.name} is not running"
        self._order.send_nowait(what)

    def crash(self) -> None:
        self.order("crash")

    def exit_normal(self) -> None:
        self.order("normal")

    def exit_shutdown(self) -> None:
        self.order("shutdown")


@pytest.fixture
def trace() -> Trace:
    return Trace()


@pytest.fixture
def services() -> SystemServices:
    dead_letters = DeadLetters()
    return SystemServices(
        registry=Registry(dead_letters),
        dead_letters=dead_letters,
        hooks=HookBus(),
        inflight=InflightTracker(),
    )


@dataclass
class Running:
    """A supervisor running in a test nursery, and how it ended."""

    sup: Supervisor
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None

    async def stop(self) -> None:
        self.sup.request_stop()
        await self.done.wait()


async def _run(running: Running, *, task_status: trio.TaskStatus[None]) -> None:
    try:
        await running.sup.run(task_status=task_status)
    except Exception as exc:
        running.error = exc
    finally:
        running.done.set()


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def start_supervisor(
    nursery: trio.Nursery,
    services: SystemServices,
    policy: SupervisorPolicy,
    children: list[ChildSpec],
    *,
    cls: type[Supervisor] = Supervisor,
    name: str = "sup",
) -> Running:
    running = Running(cls(name, policy, children, services=services))
    await nursery.start(functools.partial(_run, running))
    return running
