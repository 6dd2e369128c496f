"""The actor system: the root nursery, signals, and a shutdown in phases.

`ActorSystem.run(root_spec)` starts the hook dispatcher and the root of the
supervision tree, then waits. SIGTERM or SIGINT (or `request_stop()`) starts a
graceful stop, in the phases hypercorn's trio worker and Akka's
CoordinatedShutdown use:

1. `stop_intake`: the in-flight tracker refuses new work and the tasks
   registered for this phase run (channels stop accepting);
2. `drain`: work in flight gets until `shutdown_grace_s` to finish, then the
   phase's tasks run (channels end what is left);
3. `stop_actors`: the tree is stopped in reverse start order, each child
   within its own `shutdown_s`, then cancelled;
4. `close_resources`: the tasks registered for this phase run, and the hook
   bus delivers what is queued.

A second SIGINT cancels everything at once. `run` returns the process exit
code: 0 after a graceful stop, 1 when the root failed or escalated, 130 when
forced.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Final

import trio

from runtime.deadletters import DeadLetters
from runtime.hooks import DEFAULT_HOOK_TIMEOUT_S, HookBus
from runtime.inflight import InflightTracker
from runtime.registry import Registry
from runtime.spec import ChildContext, ChildSpec, ChildState, NodeSnapshot, SystemServices

__all__ = [
    "DEFAULT_PHASE_TIMEOUT_S",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "EXIT_FAILED",
    "EXIT_FORCED",
    "EXIT_OK",
    "ActorSystem",
    "ShutdownPhase",
]

log = logging.getLogger("callboard.runtime.system")

DEFAULT_SHUTDOWN_GRACE_S: Final = 25.0
DEFAULT_PHASE_TIMEOUT_S: Final = 5.0
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_FORCED: Final = 130


class ShutdownPhase(StrEnum):
    """The phases of a graceful stop, in the order they run."""

    STOP_INTAKE = "stop_intake"
    DRAIN = "drain"
    STOP_ACTORS = "stop_actors"
    CLOSE_RESOURCES = "close_resources"


PhaseTask = Callable[[], Awaitable[None]]


class ActorSystem:
    """Owns the root nursery, the shared services and the graceful stop.

    Args:
        shutdown_grace_s: how long work in flight may take once a stop begins.
        phase_timeout_s: the budget of each task registered for a phase.
        hook_timeout_s: the default timeout of hook handlers.
    """

    def __init__(
        self,
        *,
        shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S,
        phase_timeout_s: float = DEFAULT_PHASE_TIMEOUT_S,
        hook_timeout_s: float = DEFAULT_HOOK_TIMEOUT_S,
    ) -> None:
        dead_letters = DeadLetters()
        self.services = SystemServices(
            registry=Registry(dead_letters),
            dead_letters=dead_letters,
            hooks=HookBus(default_timeout_s=hook_timeout_s),
            inflight=InflightTracker(),
        )
        self.shutdown_grace_s = shutdown_grace_s
        self.phase_timeout_s = phase_timeout_s
        self._phase_tasks: dict[ShutdownPhase, list[tuple[str, PhaseTask]]] = {
            phase: [] for phase in ShutdownPhase
        }
        self._stop = trio.Event()
        self._stop_reason = ""
        self._root: ChildContext | None = None
        self._root_spec: ChildSpec | None = None
        self._root_done = trio.Event()
        self._root_error: BaseException | None = None
        self._forced = False
        self._scope: trio.CancelScope | None = None
        self.phase: ShutdownPhase | None = None
        """The shutdown phase under way, or None while running normally."""

    @property
    def registry(self) -> Registry:
        """Actors by name."""
        return self.services.registry

    @property
    def hooks(self) -> HookBus:
        """The hook bus."""
        return self.services.hooks

    @property
    def inflight(self) -> InflightTracker:
        """Work in flight, waited for by the drain phase."""
        return self.services.inflight

    @property
    def dead_letters(self) -> DeadLetters:
        """Dropped and undeliverable messages."""
        return self.services.dead_letters

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    @property
    def stop_reason(self) -> str:
        """Why the stop was requested ("" while running)."""
        return self._stop_reason

    def on_shutdown(self, phase: ShutdownPhase, name: str, task: PhaseTask) -> None:
        """Run `task` during `phase` of a graceful stop (in registration order)."""
        self._phase_tasks[phase].append((name, task))

    def request_stop(self, reason: str = "requested") -> None:
        """Begin a graceful stop (idempotent)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            log.info("stopping: %s", reason)
            self._stop.set()

    def force_stop(self) -> None:
        """Cancel everything at once (the second SIGINT)."""
        self._forced = True
        self._stop.set()
        if self._scope is not None:
            self._scope.cancel()

    async def run(
        self,
        root: ChildSpec,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Start `root`, run until stopped, stop gracefully; returns the exit code.

        Args:
            root: the root of the tree (normally a `supervisor_spec`).
            handle_signals: turn SIGTERM and SIGINT into a graceful stop (main
                thread only).
            task_status: `started()` once the whole tree has started.
        """
        self._root_spec = root
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(self.services.hooks.run)
                signals = trio.CancelScope()
                if handle_signals:
                    await nursery.start(self._watch_signals, signals)
                ctx = ChildContext(root.name, root.name, None, self.services)
                self._root = ctx
                try:
                    await nursery.start(self._run_root, root, ctx)
                except Exception as exc:  # noqa: BLE001 - any start failure is exit code 1
                    log.critical("the supervision tree failed to start: %s", exc)
                    self._root_error = exc
                    self._root_done.set()
                else:
                    log.info("supervision tree started; SIGTERM or SIGINT stops it gracefully")
                    task_status.started()
                    await self._stop.wait()
                await self._shutdown(ctx)
                signals.cancel()
        if self._forced:
            log.warning("forced stop: work in flight was cancelled")
            return EXIT_FORCED
        return EXIT_FAILED if self._root_error is not None else EXIT_OK

    async def _run_root(
        self, root: ChildSpec, ctx: ChildContext, *, task_status: trio.TaskStatus[None]
    ) -> None:
        started = False

        class _Status:
            def started(self, value: None = None) -> None:
                nonlocal started
                started = True
                task_status.started()

        try:
            await root.start(ctx, task_status=_Status())
        except Exception as exc:
            if not started:
                raise
            log.critical("the root of the supervision tree failed: %s", exc)
            self._root_error = exc
        finally:
            self._root_done.set()
        if not ctx.stop_requested:
            self.request_stop("the root of the supervision tree exited")

    async def _watch_signals(
        self, scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]
    ) -> None:
        with scope, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            task_status.started()
            async for signum in received:
                name = signal.Signals(signum).name
                if not self.stopping:
                    self.request_stop(f"received {name}")
                elif signum == signal.SIGINT:
                    log.warning("second SIGINT: cancelling at once")
                    self.force_stop()
                else:
                    log.info("received %s again; the graceful stop goes on", name)

    async def _shutdown(self, root: ChildContext) -> None:
        self.phase = ShutdownPhase.STOP_INTAKE
        self.inflight.close()
        await self._run_phase_tasks(ShutdownPhase.STOP_INTAKE)

        self.phase = ShutdownPhase.DRAIN
        pending = self.inflight.count
        if pending:
            log.info("draining %d request(s) in flight, up to %g s", pending, self.shutdown_grace_s)
        if not await self.inflight.wait_idle(self.shutdown_grace_s):
            log.warning(
                "drain deadline (%g s) passed with %d request(s) in flight",
                self.shutdown_grace_s,
                self.inflight.count,
            )
        await self._run_phase_tasks(ShutdownPhase.DRAIN)

        self.phase = ShutdownPhase.STOP_ACTORS
        root.request_stop(final=True)
        await self._root_done.wait()

        self.phase = ShutdownPhase.CLOSE_RESOURCES
        await self._run_phase_tasks(ShutdownPhase.CLOSE_RESOURCES)
        self.hooks.close()

    async def _run_phase_tasks(self, phase: ShutdownPhase) -> None:
        for name, task in self._phase_tasks[phase]:
            with trio.move_on_after(self.phase_timeout_s) as scope:
                try:
                    await task()
                except Exception:
                    log.exception("shutdown phase %s: task %s failed", phase.value, name)
            if scope.cancelled_caught:
                log.warning(
                    "shutdown phase %s: task %s cut off after %g s",
                    phase.value,
                    name,
                    self.phase_timeout_s,
                )

    def snapshot(self) -> NodeSnapshot | None:
        """The live supervision tree, or None before the root started."""
        root = self._root
        spec = self._root_spec
        if root is None or spec is None:
            return None
        below = root.node.snapshot() if root.node is not None else None
        state = (
            ChildState.STOPPED
            if self._root_done.is_set()
            else (below.state if below is not None else ChildState.RUNNING)
        )
        return NodeSnapshot(
            root.name, spec.kind, state, 0, None, below.children if below is not None else ()
        )
