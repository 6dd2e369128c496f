"""The ask deadline wheel: expiry on trio's clock, early wake, discard."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from runtime.deadlines import TICK_S, deadline_wheel
from runtime.mailbox import EXPIRED, Reply


async def test_replies_expire_in_deadline_order_within_a_tick(autojump_clock: MockClock) -> None:
    expired: list[tuple[str, float]] = []
    start = trio.current_time()

    async def wait(name: str, after_s: float) -> None:
        result = await Reply().wait_until(trio.current_time() + after_s)
        assert result is EXPIRED
        expired.append((name, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "late", 30.0)
        await trio.testing.wait_all_tasks_blocked()  # the timer now sleeps for "late"
        nursery.start_soon(wait, "early", 5.0)  # earlier than what the timer sleeps for
        nursery.start_soon(wait, "middle", 12.0)
    assert [name for name, _ in expired] == ["early", "middle", "late"]
    for (_, at), due in zip(expired, (5.0, 12.0, 30.0), strict=True):
        assert due <= at <= due + TICK_S + 1e-9


async def test_an_answered_reply_is_unfiled(autojump_clock: MockClock) -> None:
    reply = Reply()

    async def answer() -> None:
        await trio.sleep(1)
        reply.set_value("yes")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        assert await reply.wait_until(trio.current_time() + 10) == "yes"
    assert len(deadline_wheel()) == 0
    await trio.sleep(20)  # its bucket passes without effect
    assert reply.done and not reply.abandoned


async def test_a_cancelled_asker_is_unfiled_and_abandons(autojump_clock: MockClock) -> None:
    reply = Reply()
    with trio.move_on_after(1):
        await reply.wait_until(trio.current_time() + 100)
    assert reply.abandoned
    assert len(deadline_wheel()) == 0
    reply.set_value(1)
    assert not reply.done


@pytest.mark.parametrize("value", [None, 0, "", EXPIRED.__class__])
async def test_ordinary_values_are_not_mistaken_for_expiry(
    autojump_clock: MockClock, value: object
) -> None:
    reply = Reply()
    reply.set_value(value)
    assert await reply.wait_until(trio.current_time() + 1) is value
