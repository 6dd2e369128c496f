"""Counting the work in flight, so a shutdown can wait for it.

Channels register each request they are serving (`with tracker.track("ws"):`);
the system's drain phase closes the tracker (new work is refused with
`ShuttingDown`) and waits, with a deadline, until the count reaches zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from runtime.errors import ShuttingDown

__all__ = ["InflightTracker"]


class InflightTracker:
    """Counts requests in flight, by kind."""

    __slots__ = ("_by_kind", "_closed", "_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._by_kind: Counter[str] = Counter()
        self._closed = False
        self._idle: trio.Event | None = None

    @property
    def count(self) -> int:
        """Requests in flight now."""
        return self._count

    @property
    def closed(self) -> bool:
        """True once `close` was called: `track` refuses new work."""
        return self._closed

    def by_kind(self) -> dict[str, int]:
        """Requests in flight now, by kind (kinds at zero are left out)."""
        return {kind: n for kind, n in self._by_kind.items() if n}

    @contextmanager
    def track(self, kind: str) -> Iterator[None]:
        """Count one request of `kind` for the duration of the block.

        Raises:
            ShuttingDown: the tracker is closed.
        """
        if self._closed:
            raise ShuttingDown(f"new {kind} request")
        self._count += 1
        self._by_kind[kind] += 1
        try:
            yield
        finally:
            self._count -= 1
            self._by_kind[kind] -= 1
            if self._count == 0 and self._idle is not None:
                self._idle.set()
                self._idle = None

    def close(self) -> None:
        """Refuse new requests from now on; those in flight go on."""
        self._closed = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is in flight, at most `timeout_s`.

        Returns:
            True if the count reached zero, False if the deadline passed first.
        """
        with trio.move_on_after(timeout_s):
            while self._count:
                if self._idle is None:
                    self._idle = trio.Event()
                await self._idle.wait()
            return True
        return False
