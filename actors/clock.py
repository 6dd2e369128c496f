"""Wall-clock time that follows trio's clock.

Timestamps written to disk (cooldowns, session records) are epoch seconds; in
memory they advance with trio's clock, so tests on a `MockClock` see days pass
in virtual time, and every part of one process agrees on "now".
"""

from __future__ import annotations

import time

import trio

__all__ = ["WallClock"]


class WallClock:
    """Epoch seconds that advance with trio's clock (virtual in tests)."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = time.time() - trio.current_time()

    def now(self) -> float:
        """The current epoch time, per trio's clock."""
        return trio.current_time() + self._offset
