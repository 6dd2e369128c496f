"""The hook bus: named events with typed payloads, observers and interceptors.

Two kinds of handler:

* **Observers** watch. `notify` hands the payload to the bus's dispatcher and
  returns at once; each observer then runs in its own task under its own
  timeout. An exception or a timeout in one is logged and counted, and never
  reaches the emitter nor the other observers. Observers registered on a
  *lane* (a plugin's, say) instead see their events one at a time, in the
  order they were notified, each call still under its own timeout; lanes run
  concurrently with each other and with the other observers.
* **Interceptors** steer. `emit` runs them one after another in priority order
  (lowest first); each may return a replacement payload of the same type,
  `None` to keep it, or `Veto(reason)`. An interceptor that raises or times out
  is skipped when it is `fail_open` and vetoes when it is `fail_closed`.
  Observers of the event then see the final payload.

An event nobody listens to costs a dictionary lookup. When the bus closes,
observers still running or queued on a lane get the longest observer timeout
to finish, then are cancelled: a slow observer never holds a stop longer.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import trio

from runtime.errors import HookPayloadError, HookVetoed

__all__ = [
    "DEFAULT_HOOK_QUEUE",
    "DEFAULT_HOOK_TIMEOUT_S",
    "HookBus",
    "HookEvent",
    "Interceptor",
    "Observer",
    "Veto",
]

log = logging.getLogger("callboard.runtime.hooks")

DEFAULT_HOOK_TIMEOUT_S: Final = 5.0
DEFAULT_HOOK_QUEUE: Final = 10_000
"""Notifications waiting for the dispatcher before new ones are dropped."""

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class HookEvent(Generic[P]):
    """A named event and the type of its payload.

    Declare events once, as module constants::

        GATEWAY_START = HookEvent("gateway:start", GatewayStart)
    """

    name: str
    payload_type: type[P]

    def check(self, payload: object, where: str) -> None:
        """Raise `HookPayloadError` unless `payload` is of this event's type."""
        if not isinstance(payload, self.payload_type):
            raise HookPayloadError(
                self.name, self.payload_type.__name__, type(payload).__name__, where
            )


@dataclass(frozen=True, slots=True)
class Veto:
    """Returned by an interceptor to stop the event; `reason` reaches the emitter."""

    reason: str


@dataclass(frozen=True, slots=True)
class Observer(Generic[P]):
    """A registered observer."""

    name: str
    handler: Callable[[P], Awaitable[None]]
    timeout_s: float
    lane: str | None = None


@dataclass(frozen=True, slots=True)
class Interceptor(Generic[P]):
    """A registered interceptor."""

    name: str
    handler: Callable[[P], Awaitable[P | Veto | None]]
    priority: int
    fail_open: bool
    timeout_s: float
    order: int = field(compare=False)


def _handler_name(handler: Callable[..., object]) -> str:
    module = getattr(handler, "__module__", None) or "?"
    qualname = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{module}.{qualname}"


H = TypeVar("H")


def _remove_from(table: dict[str, tuple[H, ...]], name: str, handler: H) -> None:
    remaining = tuple(h for h in table.get(name, ()) if h is not handler)
    if remaining:
        table[name] = remaining
    else:
        table.pop(name, None)


class HookBus:
    """Routes events to observers and interceptors.

    Observers run in the dispatcher started with `await nursery.start(bus.run)`;
    notifications made before it runs wait in a bounded queue.

    Args:
        default_timeout_s: the timeout of handlers registered without one.
        queue_size: notifications waiting for the dispatcher; beyond it they are
            dropped and counted in `stats()["dropped"]`.
    """

    def __init__(
        self,
        *,
        default_timeout_s: float = DEFAULT_HOOK_TIMEOUT_S,
        queue_size: int = DEFAULT_HOOK_QUEUE,
    ) -> None:
        self.default_timeout_s = default_timeout_s
        self._observers: dict[str, tuple[Observer[Any], ...]] = {}
        self._interceptors: dict[str, tuple[Interceptor[Any], ...]] = {}
        self._queue: deque[tuple[HookEvent[Any], object, tuple[Observer[Any], ...]]] = deque()
        self._lanes: dict[str, deque[tuple[HookEvent[Any], Observer[Any], object]]] = {}
        self._queue_size = queue_size
        self._dispatcher: trio.lowlevel.Task | None = None
        self._closing = False
        self._registrations = 0
        self._stats: Counter[str] = Counter()

    # -- registration ------------------------------------------------------

    def observe(
        self,
        event: HookEvent[P],
        handler: Callable[[P], Awaitable[None]],
        *,
        timeout_s: float | None = None,
        name: str | None = None,
        lane: str | None = None,
    ) -> Observer[P]:
        """Register an observer of `event`; returns it (pass it to `remove`).

        Args:
            event: what to observe.
            handler: called with each payload.
            timeout_s: its time limit a call (default: the bus's).
            name: for logs (default: the handler's qualified name).
            lane: deliver in order, one at a time, with the other observers of
                this lane (None: each call in its own task).
        """
        observer = Observer(
            name or _handler_name(handler),
            handler,
            self.default_timeout_s if timeout_s is None else timeout_s,
            lane,
        )
        self._observers[event.name] = (*self._observers.get(event.name, ()), observer)
        return observer

    def intercept(
        self,
        event: HookEvent[P],
        handler: Callable[[P], Awaitable[P | Veto | None]],
        *,
        priority: int = 0,
        fail_open: bool = True,
        timeout_s: float | None = None,
        name: str | None = None,
    ) -> Interceptor[P]:
        """Register an interceptor of `event`; lower `priority` runs first, ties in order."""
        self._registrations += 1
        interceptor = Interceptor(
            name or _handler_name(handler),
            handler,
            priority,
            fail_open,
            self.default_timeout_s if timeout_s is None else timeout_s,
            self._registrations,
        )
        chain = [*self._interceptors.get(event.name, ()), interceptor]
        chain.sort(key=lambda i: (i.priority, i.order))
        self._interceptors[event.name] = tuple(chain)
        return interceptor

    def remove(self, event: HookEvent[Any], handler: Observer[Any] | Interceptor[Any]) -> None:
        """Unregister an observer or interceptor returned by `observe` or `intercept`."""
        if isinstance(handler, Observer):
            _remove_from(self._observers, event.name, handler)
        else:
            _remove_from(self._interceptors, event.name, handler)

    def observers(self, event: HookEvent[P]) -> tuple[Observer[P], ...]:
        """The observers of `event`, in registration order."""
        return self._observers.get(event.name, ())

    def interceptors(self, event: HookEvent[P]) -> tuple[Interceptor[P], ...]:
        """The interceptors of `event`, in the order they run."""
        return self._interceptors.get(event.name, ())

    def has_handlers(self, event: HookEvent[Any]) -> bool:
        """True if anything observes or intercepts `event`."""
        return event.name in self._observers or event.name in self._interceptors

    # -- emitting ----------------------------------------------------------

    def notify(self, event: HookEvent[P], payload: P) -> None:
        """Hand `payload` to the observers of `event` and return at once."""
        observers = self._observers.get(event.name)
        if observers is None:
            return
        event.check(payload, "the payload")
        if len(self._queue) >= self._queue_size or self._closing:
            self._stats["dropped"] += 1
            log.warning("hook %s: notification dropped (queue full or bus closed)", event.name)
            return
        self._queue.append((event, payload, observers))
        task = self._dispatcher
        if task is not None:
            self._dispatcher = None
            trio.lowlevel.reschedule(task)

    async def emit(self, event: HookEvent[P], payload: P) -> P:
        """Run the interceptors of `event` in order, then notify its observers.

        Returns:
            The payload as the interceptors left it.

        Raises:
            HookVetoed: an interceptor vetoed, or a `fail_closed` one failed.
            HookPayloadError: the payload or a replacement is of the wrong type.
        """
        chain = self._interceptors.get(event.name)
        if chain is not None:
            event.check(payload, "the payload")
            for interceptor in chain:
                payload = await self._run_interceptor(event, interceptor, payload)
        self.notify(event, payload)
        return payload

    async def _run_interceptor(
        self, event: HookEvent[P], interceptor: Interceptor[P], payload: P
    ) -> P:
        with trio.move_on_after(interceptor.timeout_s):
            try:
                result = await interceptor.handler(payload)
            except Exception as exc:
                self._stats["interceptor_errors"] += 1
                failure = f"raised {type(exc).__name__}: {exc}"
                log.exception("hook %s: interceptor %s failed", event.name, interceptor.name)
            else:
                if result is None:
                    return payload
                if isinstance(result, Veto):
                    self._stats["vetoes"] += 1
                    raise HookVetoed(event.name, interceptor.name, result.reason)
                event.check(result, f"the replacement from {interceptor.name}")
                return result
            return self._interceptor_failed(event, interceptor, payload, failure)
        self._stats["interceptor_timeouts"] += 1
        log.warning(
            "hook %s: interceptor %s timed out after %g s",
            event.name,
            interceptor.name,
            interceptor.timeout_s,
        )
        return self._interceptor_failed(
            event, interceptor, payload, f"timed out after {interceptor.timeout_s:g} s"
        )

    @staticmethod
    def _interceptor_failed(
        event: HookEvent[P], interceptor: Interceptor[P], payload: P, failure: str
    ) -> P:
        if interceptor.fail_open:
            return payload
        raise HookVetoed(event.name, interceptor.name, f"fail_closed interceptor {failure}")

    # -- the dispatcher ----------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch notifications to observers until `close` and the queue is empty.

        Observers still running when the bus closes finish within their timeouts.
        """
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                while self._queue:
                    event, payload, observers = self._queue.popleft()
                    for observer in observers:
                        if observer.lane is None:
                            nursery.start_soon(self._run_observer, event, observer, payload)
                        else:
                            self._enqueue(nursery, event, observer, payload)
                if self._closing:
                    nursery.cancel_scope.deadline = trio.current_time() + self._close_budget_s()
                    break
                self._dispatcher = trio.lowlevel.current_task()

                def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
                    self._dispatcher = None
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)

    def _enqueue(
        self, nursery: trio.Nursery, event: HookEvent[Any], observer: Observer[Any], payload: object
    ) -> None:
        lane = observer.lane
        assert lane is not None
        backlog = self._lanes.get(lane)
        if backlog is None:
            backlog = self._lanes[lane] = deque()
            nursery.start_soon(self._run_lane, lane, backlog)
        elif len(backlog) >= self._queue_size:
            self._stats["dropped"] += 1
            log.warning("hook %s: lane %s is full; notification dropped", event.name, lane)
            return
        backlog.append((event, observer, payload))

    async def _run_lane(
        self, lane: str, backlog: deque[tuple[HookEvent[Any], Observer[Any], object]]
    ) -> None:
        try:
            while backlog:
                event, observer, payload = backlog[0]
                await self._run_observer(event, observer, payload)
                backlog.popleft()
        finally:
            del self._lanes[lane]  # the next notification starts a new task

    def _close_budget_s(self) -> float:
        timeouts = [o.timeout_s for group in self._observers.values() for o in group]
        return max(timeouts, default=self.default_timeout_s)

    def close(self) -> None:
        """Accept no more notifications; the dispatcher exits once the queue is empty."""
        self._closing = True
        task = self._dispatcher
        if task is not None:
            self._dispatcher = None
            trio.lowlevel.reschedule(task)

    async def _run_observer(self, event: HookEvent[P], observer: Observer[P], payload: P) -> None:
        with trio.move_on_after(observer.timeout_s):
            try:
                await observer.handler(payload)
            except Exception:
                self._stats["observer_errors"] += 1
                log.exception("hook %s: observer %s failed", event.name, observer.name)
            else:
                self._stats["observed"] += 1
            return
        self._stats["observer_timeouts"] += 1
        log.warning(
            "hook %s: observer %s timed out after %g s",
            event.name,
            observer.name,
            observer.timeout_s,
        )

    def stats(self) -> dict[str, int]:
        """Counters: observed, observer_errors, observer_timeouts, interceptor_errors,
        interceptor_timeouts, vetoes, dropped."""
        return dict(self._stats)
