"""Small test utilities shared by the suites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

TICK_S: Final = 0.01
"""Virtual time between polls; with `autojump_clock` it costs no real time."""


async def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 60.0) -> None:
    """Poll `predicate` on trio's clock until true; fail the test after `timeout_s`."""
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(TICK_S)
