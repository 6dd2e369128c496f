"""Supervisors with Erlang/OTP semantics, on trio nurseries.

A `Supervisor` starts its children in order, each with `nursery.start` (a child
counts as started when it says so), watches their exits and restarts them per
its `SupervisorPolicy`:

* strategy `one_for_one` restarts the child that exited; `one_for_all` stops
  every other running child (in reverse start order) and restarts them all in
  order; `rest_for_one` does the same for the children started after it;
* restart type `permanent` is always restarted, `transient` only after an
  abnormal exit, `temporary` never (and is forgotten);
* restart intensity: more than `max_restarts` restarts within `within_s`
  (failed restart attempts count) makes the supervisor stop all its children
  and raise `RestartIntensityExceeded` to its parent (escalation);
* backoff: before the n-th restart within the window it waits
  `min(backoff_max_s, backoff_min_s * 2**(n-1))`, less up to `backoff_jitter`
  of it at random; a stop request interrupts the wait.

Stopping is in reverse start order; each child is asked to stop and cancelled
when it has not exited within its spec's `shutdown_s`. A `DynamicSupervisor`
(like OTP's `simple_one_for_one`) holds children added and removed at run time
and stops them all at once.

Exit reasons: a child that returns on its own exits *normal*; one that returns
after a stop request, or raises `ChildShutdown`, exits *shutdown*; any other
exception is *abnormal*; one cancelled by its supervisor was *killed*.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import trio

from runtime.actor import ActorRef, unwrap_group
from runtime.errors import (
    ChildNotFound,
    DuplicateChild,
    InvalidPolicy,
    NameTaken,
    RestartIntensityExceeded,
    StartFailed,
    SupervisorNotRunning,
)
from runtime.hooks import HookEvent
from runtime.mailbox import Mailbox
from runtime.spec import (
    ChildContext,
    ChildShutdown,
    ChildSpec,
    ChildState,
    NodeKind,
    NodeSnapshot,
    Restart,
    SystemServices,
)

__all__ = [
    "ACTOR_ESCALATED",
    "ACTOR_RESTARTED",
    "ChildCounts",
    "ChildInfo",
    "ChildRestarted",
    "DynamicSupervisor",
    "ExitReason",
    "Strategy",
    "Supervisor",
    "SupervisorEscalated",
    "SupervisorPolicy",
    "SupervisorRef",
    "supervisor_spec",
]

log = logging.getLogger("callboard.runtime.supervisor")

DEFAULT_MAX_RESTARTS: Final = 3
DEFAULT_WITHIN_S: Final = 5.0


class Strategy(StrEnum):
    """Which children a supervisor restarts when one exits."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class ExitReason(StrEnum):
    """Why a child's body ended."""

    NORMAL = "normal"
    SHUTDOWN = "shutdown"
    ABNORMAL = "abnormal"
    KILLED = "killed"


@dataclass(frozen=True, slots=True)
class SupervisorPolicy:
    """A supervisor's strategy, restart intensity and backoff.

    Attributes:
        strategy: one_for_one, one_for_all or rest_for_one.
        max_restarts: restarts allowed within `within_s`; one more escalates.
        within_s: the sliding window of the restart intensity.
        backoff_min_s: wait before the first restart in the window (0: none).
        backoff_max_s: the cap of the doubling wait.
        backoff_jitter: fraction (0 to 1) of the wait taken off at random.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = DEFAULT_MAX_RESTARTS
    within_s: float = DEFAULT_WITHIN_S
    backoff_min_s: float = 0.0
    backoff_max_s: float = 0.0
    backoff_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise InvalidPolicy("max_restarts", self.max_restarts, "an integer >= 0")
        if not self.within_s > 0:
            raise InvalidPolicy("within_s", self.within_s, "a number > 0")
        if self.backoff_min_s < 0:
            raise InvalidPolicy("backoff_min_s", self.backoff_min_s, "a number >= 0")
        if self.backoff_max_s < self.backoff_min_s:
            raise InvalidPolicy(
                "backoff_max_s",
                self.backoff_max_s,
                f"a number >= backoff_min_s ({self.backoff_min_s})",
            )
        if not 0 <= self.backoff_jitter <= 1:
            raise InvalidPolicy("backoff_jitter", self.backoff_jitter, "a fraction from 0 to 1")

    def backoff_s(self, nth: int, rng: random.Random) -> float:
        """The wait before the `nth` (1-based) restart within the window."""
        if self.backoff_min_s <= 0 or nth < 1:
            return 0.0
        delay = min(self.backoff_max_s, self.backoff_min_s * 2.0 ** min(nth - 1, 62))
        return delay * (1 - self.backoff_jitter * rng.random())


@dataclass(frozen=True, slots=True)
class ChildRestarted:
    """Payload of `actor:restarted`: a supervisor restarted a child."""

    supervisor: str
    child: str
    reason: str
    restarts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class SupervisorEscalated:
    """Payload of `actor:escalated`: a supervisor gave up and failed to its parent."""

    supervisor: str
    max_restarts: int
    within_s: float
    error: str


ACTOR_RESTARTED: Final = HookEvent("actor:restarted", ChildRestarted)
ACTOR_ESCALATED: Final = HookEvent("actor:escalated", SupervisorEscalated)


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of `which_children`."""

    name: str
    kind: NodeKind
    state: ChildState
    restart: Restart
    restarts: int
    ref: ActorRef[Any] | None


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """`count_children`: specs kept, children running, and how many of each kind."""

    specs: int
    active: int
    supervisors: int
    workers: int


_IGNORED: Final = object()


class _StartStatus:
    """Forwards `started()`, remembers that it was called and marks the child running."""

    __slots__ = ("_child", "_status", "started_")

    def __init__(self, status: trio.TaskStatus[object], child: _Child) -> None:
        self._status = status
        self._child = child
        self.started_ = False

    def started(self, value: object = None) -> None:
        self.started_ = True
        # Running from this moment: the child may already be handling messages
        # before the supervisor's task resumes.
        self._child.state = ChildState.RUNNING
        self._status.started(value)


class _Child(ChildContext):
    """A child's record in its supervisor; it is also the child's context."""

    __slots__ = ("alive", "done", "incarnation", "ref", "restarts", "scope", "spec", "state")

    def __init__(self, spec: ChildSpec, path: str, services: SystemServices) -> None:
        mailbox = (
            Mailbox(spec.name, spec.mailbox, services.dead_letters)
            if spec.mailbox is not None
            else None
        )
        super().__init__(spec.name, path, mailbox, services)
        self.spec = spec
        self.ref: ActorRef[Any] | None = ActorRef(mailbox) if mailbox is not None else None
        self.state = ChildState.STOPPED
        self.restarts = 0
        self.incarnation = 0
        self.alive = False
        self.scope: trio.CancelScope | None = None
        self.done: trio.Event | None = None


@dataclass(frozen=True, slots=True)
class _Exit:
    child: _Child
    incarnation: int
    reason: ExitReason
    error: BaseException | None


class Supervisor:
    """Starts, watches, restarts and stops a list of children.

    Run it with `await nursery.start(supervisor.run)`; it returns from `start`
    once every child has started, and from `run` once stopped (or raises
    `RestartIntensityExceeded` after stopping its children). Ask it to stop
    with `request_stop()`.

    Args:
        name: the supervisor's name (its path when it is the root).
        policy: strategy, restart intensity and backoff.
        children: started in this order, stopped in the reverse.
        services: registry, dead letters, hooks, in-flight tracker.
        path: its place in the tree (default: `name`).
        rng: the randomness of the backoff jitter (seed it in tests).
    """

    kind: Final = NodeKind.SUPERVISOR

    def __init__(
        self,
        name: str,
        policy: SupervisorPolicy,
        children: Sequence[ChildSpec],
        *,
        services: SystemServices,
        path: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.path = path or name
        self.policy = policy
        self.services = services
        self._initial = tuple(children)
        seen: set[str] = set()
        for spec in self._initial:
            if spec.name in seen:
                raise DuplicateChild(self.path, spec.name)
            seen.add(spec.name)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._children: dict[str, _Child] = {}
        self._restart_times: deque[float] = deque()
        self._exits_send, self._exits_recv = trio.open_memory_channel[_Exit](math.inf)
        self._loop_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self.state = ChildState.STARTING

    # -- running -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children, supervise them until asked to stop, then stop them.

        Raises:
            StartFailed: a child failed to start (those started are stopped first).
            RestartIntensityExceeded: escalation, after stopping every child.
        """
        escalation: RestartIntensityExceeded | None = None
        start_failure: StartFailed | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for spec in self._initial:
                    await self._add_and_start(spec)
            except StartFailed as exc:
                start_failure = exc
            else:
                self.state = ChildState.RUNNING
                task_status.started()
                with self._loop_scope:
                    try:
                        await self._loop()
                    except RestartIntensityExceeded as exc:
                        escalation = exc
            self.state = ChildState.STOPPING
            await self._stop_all()
            self._exits_send.close()
        self.state = ChildState.STOPPED
        # Raised outside the nursery, so the parent sees the error itself, not a group.
        if start_failure is not None:
            raise start_failure
        if escalation is not None:
            log.error("%s", escalation)
            self.services.hooks.notify(
                ACTOR_ESCALATED,
                SupervisorEscalated(
                    self.path, self.policy.max_restarts, self.policy.within_s, str(escalation)
                ),
            )
            raise escalation

    def request_stop(self) -> None:
        """Stop supervising: the children are then stopped in reverse order."""
        self._loop_scope.cancel()

    async def _loop(self) -> None:
        async for exited in self._exits_recv:
            await self._handle_exit(exited)

    # -- starting ----------------------------------------------------------

    async def _add_and_start(self, spec: ChildSpec) -> _Child:
        if spec.name in self._children:
            raise DuplicateChild(self.path, spec.name)
        child = _Child(spec, f"{self.path}/{spec.name}", self.services)
        if spec.register and child.ref is not None:
            try:
                self.services.registry.register(spec.name, child.ref)
            except NameTaken as exc:
                raise StartFailed(self.path, spec.name, exc) from exc
        self._children[spec.name] = child
        try:
            await self._start(child)
        except StartFailed:
            self._forget(child)
            raise
        if child.state is not ChildState.RUNNING and spec.restart is Restart.TEMPORARY:
            self._forget(child)  # an ignored temporary child is not kept (OTP)
        return child

    async def _start(self, child: _Child) -> None:
        """Start one incarnation of `child`; `StartFailed` if it raised first."""
        assert self._nursery is not None
        child.incarnation += 1
        child.reset_for_start()
        child.scope = trio.CancelScope()
        child.done = None
        child.state = ChildState.STARTING
        if child.mailbox is not None:
            child.mailbox.reopen()
        child.alive = True
        try:
            result = await self._nursery.start(self._child_main, child, child.incarnation)
        except Exception as exc:  # noqa: BLE001 - becomes StartFailed, cause chained
            child.state = ChildState.STOPPED
            cause = unwrap_group(exc)
            raise StartFailed(self.path, child.name, cause) from cause
        except BaseException:
            child.state = ChildState.STOPPED
            raise
        if result is _IGNORED:
            child.state = ChildState.STOPPED

    async def _child_main(
        self, child: _Child, incarnation: int, *, task_status: trio.TaskStatus[object]
    ) -> None:
        status = _StartStatus(task_status, child)
        scope = child.scope
        assert scope is not None
        reason = ExitReason.NORMAL
        error: BaseException | None = None
        try:
            with scope:
                await child.spec.start(child, task_status=status)
            if scope.cancelled_caught:
                reason = ExitReason.KILLED
            elif child.stop_requested:
                reason = ExitReason.SHUTDOWN
        except ChildShutdown:
            reason = ExitReason.SHUTDOWN
        except Exception as exc:
            if not status.started_:
                raise
            reason, error = ExitReason.ABNORMAL, exc
        finally:
            child.alive = False
            if child.done is not None:
                child.done.set()
        if not status.started_:
            task_status.started(_IGNORED)  # returned before starting: OTP's `ignore`
            return
        self._exits_send.send_nowait(_Exit(child, incarnation, reason, error))

    # -- exits and restarts ------------------------------------------------

    async def _handle_exit(self, exited: _Exit) -> None:
        child = exited.child
        if (
            child.incarnation != exited.incarnation
            or self._children.get(child.name) is not child
            or child.state is not ChildState.RUNNING
        ):
            return  # stale, or an exit we caused and already handled
        child.state = ChildState.STOPPED
        detail = self._describe(exited)
        if not self._restarts_after(child.spec.restart, exited.reason):
            log.info("%s: child %s exited (%s); not restarted", self.path, child.name, detail)
            self._after_final_exit(child)
            return
        log.warning("%s: child %s exited (%s); restarting", self.path, child.name, detail)
        await self._restart(child, exited.reason, exited.error)

    @staticmethod
    def _describe(exited: _Exit) -> str:
        if exited.error is None:
            return exited.reason.value
        error = unwrap_group(exited.error)
        return f"{exited.reason.value}: {type(error).__name__}: {error}"

    @staticmethod
    def _restarts_after(restart: Restart, reason: ExitReason) -> bool:
        if restart is Restart.PERMANENT:
            return True
        if restart is Restart.TRANSIENT:
            return reason in (ExitReason.ABNORMAL, ExitReason.KILLED)
        return False

    def _after_final_exit(self, child: _Child) -> None:
        """A child that exited and will not be restarted."""
        if child.mailbox is not None:
            child.mailbox.fail_pending()
        if child.spec.restart is Restart.TEMPORARY:
            self._forget(child)

    def _group(self, failed: _Child) -> list[_Child]:
        children = list(self._children.values())
        strategy = self.policy.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return children
        if strategy is Strategy.REST_FOR_ONE:
            return children[children.index(failed) :]
        return [failed]

    async def _restart(
        self, failed: _Child, reason: ExitReason, error: BaseException | None
    ) -> None:
        group = self._group(failed)
        for sibling in reversed(group):
            if sibling is not failed and sibling.alive:
                await self._terminate(sibling, final=False)
        keep: list[_Child] = []
        for member in group:
            if member is not failed and member.spec.restart is Restart.TEMPORARY:
                if member.state is ChildState.RESTARTING:
                    self._after_final_exit(member)  # temporary siblings are not restarted
            elif member is failed or member.state is ChildState.RESTARTING:
                keep.append(member)
        group = keep
        last = f"{failed.name}: {reason.value}" + (
            f" ({type(error).__name__}: {error})" if error is not None else ""
        )
        for member in group:
            member.state = ChildState.RESTARTING
        while True:
            self._count_restart(last)
            delay = self.policy.backoff_s(len(self._restart_times), self._rng)
            if delay:
                await trio.sleep(delay)
            started: list[_Child] = []
            try:
                for member in group:
                    if self._children.get(member.name) is not member:
                        continue  # removed meanwhile (terminate_child/delete_child)
                    member.restarts += 1
                    await self._start(member)
                    started.append(member)
                    self.services.hooks.notify(
                        ACTOR_RESTARTED,
                        ChildRestarted(
                            self.path,
                            member.name,
                            reason.value,
                            member.restarts,
                            _error_text(error),
                        ),
                    )
            except StartFailed as exc:
                last = str(exc)
                log.warning("%s", exc)
                broken = next(m for m in group if m not in started)
                if self.policy.strategy is Strategy.ONE_FOR_ALL:
                    for member in reversed(started):
                        await self._terminate(member, final=False)
                    for member in group:
                        member.state = ChildState.RESTARTING
                else:
                    group = group[group.index(broken) :]
                    broken.state = ChildState.RESTARTING
                continue
            return

    def _count_restart(self, last: str) -> None:
        now = trio.current_time()
        times = self._restart_times
        times.append(now)
        horizon = now - self.policy.within_s
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) > self.policy.max_restarts:
            raise RestartIntensityExceeded(
                self.path, self.policy.max_restarts, self.policy.within_s, last
            )

    # -- stopping ----------------------------------------------------------

    async def _terminate(self, child: _Child, *, final: bool) -> None:
        """Ask `child` to stop, cancel it after its `shutdown_s`, wait until it is gone."""
        if child.alive:
            child.state = ChildState.STOPPING
            if child.done is None:
                child.done = trio.Event()
            done = child.done
            child.request_stop(final=final)
            with trio.move_on_after(child.spec.shutdown_s):
                await done.wait()
            if child.alive:
                log.warning(
                    "%s: child %s did not stop within %g s; cancelling",
                    self.path,
                    child.name,
                    child.spec.shutdown_s,
                )
                assert child.scope is not None
                child.scope.cancel()
                await done.wait()
        child.state = ChildState.RESTARTING if not final else ChildState.STOPPED
        if final and child.mailbox is not None:
            child.mailbox.fail_pending()

    async def _stop_all(self) -> None:
        for child in reversed(list(self._children.values())):
            await self._terminate(child, final=True)
        self._release_all()

    def _release_all(self) -> None:
        for child in list(self._children.values()):
            if child.ref is not None and child.spec.register:
                self.services.registry.unregister(child.name, child.ref)

    def _forget(self, child: _Child) -> None:
        if self._children.get(child.name) is child:
            del self._children[child.name]
        if child.mailbox is not None:
            child.mailbox.fail_pending()
        if child.ref is not None and child.spec.register:
            self.services.registry.unregister(child.name, child.ref)

    # -- administration (OTP's start_child, terminate_child, ...) -----------

    def _require_running(self) -> None:
        if self.state is not ChildState.RUNNING or self._loop_scope.cancel_called:
            raise SupervisorNotRunning(self.path, self.state.value)

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any] | None:
        """Add a child at the end and start it.

        Returns:
            The child's `ActorRef` if it is an actor, else None.

        Raises:
            DuplicateChild: a child of that name exists.
            StartFailed: it raised before starting (it is not kept).
            SupervisorNotRunning: the supervisor is starting or stopping.
        """
        self._require_running()
        child = await self._add_and_start(spec)
        return child.ref

    async def terminate_child(self, name: str) -> None:
        """Stop a child for good; its spec is kept (unless temporary) for `restart_child`."""
        child = self._get(name)
        await self._terminate(child, final=True)
        if child.spec.restart is Restart.TEMPORARY:
            self._forget(child)

    async def restart_child(self, name: str) -> None:
        """Start a stopped child again (after `terminate_child` or a final exit)."""
        self._require_running()
        child = self._get(name)
        if child.alive:
            raise DuplicateChild(self.path, name)
        await self._start(child)

    def delete_child(self, name: str) -> None:
        """Forget a stopped child's spec."""
        child = self._get(name)
        if child.alive:
            raise DuplicateChild(self.path, name)
        self._forget(child)

    def _get(self, name: str) -> _Child:
        child = self._children.get(name)
        if child is None:
            raise ChildNotFound(self.path, name)
        return child

    def ref(self, name: str) -> ActorRef[Any]:
        """The `ActorRef` of the actor child `name`."""
        child = self._get(name)
        if child.ref is None:
            raise ChildNotFound(self.path, f"{name} (not an actor)")
        return child.ref

    def which_children(self) -> list[ChildInfo]:
        """Every kept child, in start order."""
        return [
            ChildInfo(c.name, c.spec.kind, c.state, c.spec.restart, c.restarts, c.ref)
            for c in self._children.values()
        ]

    def count_children(self) -> ChildCounts:
        """How many specs, running children, supervisors and workers."""
        specs = active = supervisors = 0
        for child in self._children.values():
            specs += 1
            active += child.alive
            supervisors += child.spec.kind is NodeKind.SUPERVISOR
        return ChildCounts(specs, active, supervisors, specs - supervisors)

    def snapshot(self) -> NodeSnapshot:
        """This supervisor and its subtree, now."""
        return NodeSnapshot(
            self.name,
            NodeKind.SUPERVISOR,
            self.state,
            0,
            None,
            tuple(_child_snapshot(child) for child in list(self._children.values())),
        )


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    error = unwrap_group(error)
    return f"{type(error).__name__}: {error}"


def _child_snapshot(child: _Child) -> NodeSnapshot:
    below = child.node.snapshot().children if child.node is not None else ()
    return NodeSnapshot(
        child.name,
        child.spec.kind,
        child.state,
        child.restarts,
        None if child.mailbox is None else len(child.mailbox),
        below,
    )


class DynamicSupervisor(Supervisor):
    """A one_for_one supervisor of children added and removed at run time.

    Like OTP's `simple_one_for_one`: children that exit and are not restarted
    are forgotten, `terminate_child` removes the child, and stopping the
    supervisor stops all children at once rather than one by one.
    """

    def __init__(
        self,
        name: str,
        policy: SupervisorPolicy,
        children: Sequence[ChildSpec] = (),
        *,
        services: SystemServices,
        path: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if policy.strategy is not Strategy.ONE_FOR_ONE:
            raise InvalidPolicy(f"{path or name}.strategy", policy.strategy.value, "one_for_one")
        super().__init__(name, policy, children, services=services, path=path, rng=rng)

    def _after_final_exit(self, child: _Child) -> None:
        self._forget(child)

    async def terminate_child(self, name: str) -> None:
        """Stop a child and forget it."""
        child = self._get(name)
        await self._terminate(child, final=True)
        self._forget(child)

    async def _stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for child in list(self._children.values()):
                nursery.start_soon(functools.partial(self._terminate, child, final=True))
        self._release_all()


class SupervisorRef:
    """A stable handle on whichever incarnation of a supervisor child runs now."""

    __slots__ = ("_current", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._current: Supervisor | None = None

    @property
    def current(self) -> Supervisor:
        """The running incarnation.

        Raises:
            SupervisorNotRunning: it is not running (between restarts, or stopped).
        """
        sup = self._current
        if sup is None:
            raise SupervisorNotRunning(self.name, "not running")
        return sup

    def _attach(self, sup: Supervisor | None) -> None:
        self._current = sup

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any] | None:
        """`Supervisor.start_child` on the running incarnation."""
        return await self.current.start_child(spec)

    async def terminate_child(self, name: str) -> None:
        """`Supervisor.terminate_child` on the running incarnation."""
        await self.current.terminate_child(name)


async def _run_supervisor(
    build: Callable[[ChildContext], Supervisor],
    handle: SupervisorRef | None,
    ctx: ChildContext,
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    sup = build(ctx)
    ctx.node = sup
    ctx.on_stop_requested(sup.request_stop)
    if handle is not None:
        handle._attach(sup)
    try:
        await sup.run(task_status=task_status)
    finally:
        if handle is not None and handle._current is sup:
            handle._attach(None)


def supervisor_spec(
    name: str,
    policy: SupervisorPolicy,
    children: Iterable[ChildSpec] = (),
    *,
    dynamic: bool = False,
    restart: Restart = Restart.PERMANENT,
    shutdown_s: float = math.inf,
    handle: SupervisorRef | None = None,
) -> ChildSpec:
    """A child spec for a (nested) supervisor, built afresh on every (re)start.

    Args:
        name: the supervisor's name among its siblings.
        policy: its strategy, intensity and backoff.
        children: its initial children (a dynamic supervisor may start with none).
        dynamic: a `DynamicSupervisor` rather than a `Supervisor`.
        restart: its restart type under its parent.
        shutdown_s: how long its parent waits for it to stop (default: for ever,
            since it stops its own children within their budgets).
        handle: kept pointing at the running incarnation.
    """
    specs = tuple(children)
    cls = DynamicSupervisor if dynamic else Supervisor

    def build(ctx: ChildContext) -> Supervisor:
        return cls(name, policy, specs, services=ctx.services, path=ctx.path)

    return ChildSpec(
        name=name,
        start=functools.partial(_run_supervisor, build, handle),
        restart=restart,
        shutdown_s=shutdown_s,
        kind=NodeKind.SUPERVISOR,
    )
