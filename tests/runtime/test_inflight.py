"""The in-flight tracker a graceful stop waits on."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from runtime import InflightTracker, ShuttingDown


async def test_counts_by_kind_and_waits_until_idle(autojump_clock: MockClock) -> None:
    tracker = InflightTracker()
    release = trio.Event()

    async def request(kind: str) -> None:
        with tracker.track(kind):
            await release.wait()

    async with trio.open_nursery() as nursery:
        for kind in ("ws", "ws", "http"):
            nursery.start_soon(request, kind)
        await trio.sleep(1)
        assert tracker.count == 3
        assert tracker.by_kind() == {"ws": 2, "http": 1}
        assert not await tracker.wait_idle(5)  # deadline passes first
        release.set()
        assert await tracker.wait_idle(5)
    assert tracker.count == 0 and tracker.by_kind() == {}


async def test_closed_tracker_refuses_new_work_but_keeps_old(autojump_clock: MockClock) -> None:
    tracker = InflightTracker()
    with tracker.track("ws"):
        tracker.close()
        assert tracker.closed and tracker.count == 1
        with (
            pytest.raises(ShuttingDown, match="shutting down: new http request refused"),
            tracker.track("http"),
        ):
            pass
    assert tracker.count == 0
    assert await tracker.wait_idle(0)
