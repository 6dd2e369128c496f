"""send_soon / receive_soon: trio's channel semantics without a needless yield."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from runtime import receive_soon, send_soon


async def test_an_item_that_fits_moves_without_letting_another_task_run() -> None:
    send, receive = trio.open_memory_channel[int](4)
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await send_soon(send, 1)
        assert await receive_soon(receive) == 1
        assert not ran  # neither call yielded to the scheduler
    assert ran


async def test_a_full_buffer_waits_for_the_receiver() -> None:
    send, receive = trio.open_memory_channel[int](1)
    await send_soon(send, 1)
    got: list[int] = []

    async def consumer() -> None:
        await trio.testing.wait_all_tasks_blocked()
        got.append(await receive_soon(receive))
        got.append(await receive_soon(receive))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await send_soon(send, 2)  # blocks until the consumer took the first
    assert got == [1, 2]


async def test_an_empty_channel_waits_for_the_sender() -> None:
    send, receive = trio.open_memory_channel[str](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_soon, send, "late")
        assert await receive_soon(receive) == "late"


async def test_cancellation_comes_first_and_moves_nothing() -> None:
    send, receive = trio.open_memory_channel[int](4)
    await send_soon(send, 1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send_soon(send, 2)
    assert scope.cancelled_caught
    with trio.CancelScope() as scope:
        scope.cancel()
        await receive_soon(receive)
    assert scope.cancelled_caught
    assert receive.statistics().current_buffer_used == 1  # 1 is still there, 2 never went
    assert await receive_soon(receive) == 1


async def test_closed_channels_raise_as_trio_does() -> None:
    send, receive = trio.open_memory_channel[int](4)
    await send_soon(send, 1)
    await send.aclose()
    assert await receive_soon(receive) == 1
    with pytest.raises(trio.EndOfChannel):
        await receive_soon(receive)
    send2, receive2 = trio.open_memory_channel[int](4)
    await receive2.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await send_soon(send2, 1)
    with pytest.raises(trio.ClosedResourceError):
        await receive_soon(receive2)
