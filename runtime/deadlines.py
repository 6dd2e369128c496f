"""The deadlines of `ask`, kept on a timer wheel instead of a cancel scope each.

A trio `CancelScope` with a deadline costs more than a whole actor round trip
on this class of machine (entering and leaving it registers and retires the
deadline in the run's heap), so `ask` would miss its budget of 1.3x a raw
request/reply on that alone. Instead every waiting reply is filed in a bucket
of `TICK_S` by its deadline, and one system task per trio run, sleeping on
trio's clock until the earliest bucket, expires what is still waiting there.
Filing and unfiling are dictionary operations.

Deadlines are rounded up to the next tick: an ask times out between its
deadline and one tick later. Everything runs on trio's clock, so tests with
`MockClock` see timeouts in virtual time like any other trio timeout.
"""

from __future__ import annotations

import heapq
import math
from typing import Final, Protocol

import trio
from trio.lowlevel import RunVar, spawn_system_task

__all__ = ["TICK_S", "DeadlineWheel", "Expirable", "deadline_wheel"]

TICK_S: Final = 0.01
"""Resolution of ask deadlines (seconds)."""


class Expirable(Protocol):
    """What the wheel can expire (a `Reply`)."""

    def expire(self) -> None: ...


class DeadlineWheel:
    """Buckets of waiting replies by deadline, expired by one system task."""

    __slots__ = ("_buckets", "_keys", "_sleep_scope", "_sleeping_until")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[Expirable, None]] = {}
        self._keys: list[int] = []  # a heap of the buckets' keys
        self._sleep_scope: trio.CancelScope | None = None
        self._sleeping_until: float = math.inf

    def add(self, item: Expirable, deadline: float) -> int:
        """File `item` to expire at `deadline`; returns the key to `discard` it with."""
        key = math.ceil(deadline / TICK_S)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            heapq.heappush(self._keys, key)
            if key < self._sleeping_until and self._sleep_scope is not None:
                self._sleep_scope.cancel()  # an earlier bucket: wake the timer to re-aim
        bucket[item] = None
        return key

    def discard(self, item: Expirable, key: int) -> None:
        """Unfile `item` (it got its answer, or its asker went away)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(item, None)
            if not bucket:
                del self._buckets[key]  # its key stays in the heap; `run` skips it

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    async def run(self) -> None:
        """Expire buckets as trio's clock reaches them; runs for the whole trio run."""
        while True:
            if self._keys:
                key = self._keys[0]
                when = key * TICK_S
                if trio.current_time() >= when:
                    heapq.heappop(self._keys)
                    for item in list(self._buckets.pop(key, {})):
                        item.expire()
                    continue
            else:
                when = math.inf
            with trio.CancelScope() as scope:
                self._sleep_scope = scope
                self._sleeping_until = when / TICK_S
                await trio.sleep_until(when)
            self._sleep_scope = None
            self._sleeping_until = math.inf


_WHEEL: RunVar[DeadlineWheel] = RunVar("callboard_ask_deadlines")


def deadline_wheel() -> DeadlineWheel:
    """The wheel of the current trio run, started on first use."""
    try:
        return _WHEEL.get()
    except LookupError:
        wheel = DeadlineWheel()
        _WHEEL.set(wheel)
        spawn_system_task(wheel.run, name="callboard ask deadlines")
        return wheel
