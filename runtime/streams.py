"""Memory-channel hops without a scheduling round trip when none is needed.

`trio.MemorySendChannel.send` and `MemoryReceiveChannel.receive` always yield
to the scheduler, even when the buffer has room or an item is waiting: a full
checkpoint, so one more pass of the run loop for the task. An answer's pieces
cross several such hops (provider, failover supervisor, session, channel), so
on the hot path these helpers take the item at once when they can, and only
wait (through trio's own `send`/`receive`) when they must. Each still checks
for cancellation first, so a cancelled task stops at them as it would at
trio's, before anything moved.

The price is fairness, not correctness: a producer that never has to wait does
not let other tasks run between items. The streams here are short (one answer)
and their consumers always end up waiting, so nobody starves.
"""

from __future__ import annotations

from typing import TypeVar

import trio
from trio.lowlevel import checkpoint_if_cancelled

__all__ = ["receive_soon", "send_soon"]

T = TypeVar("T")


async def send_soon(channel: trio.MemorySendChannel[T], value: T) -> None:
    """`await channel.send(value)`, without yielding when the buffer has room.

    Raises:
        trio.Cancelled: before sending, as `send` would.
        trio.BrokenResourceError: every receiver is closed.
        trio.ClosedResourceError: `channel` is closed.
    """
    await checkpoint_if_cancelled()
    try:
        channel.send_nowait(value)
    except trio.WouldBlock:
        await channel.send(value)


async def receive_soon(channel: trio.MemoryReceiveChannel[T]) -> T:
    """`await channel.receive()`, without yielding when an item is waiting.

    Raises:
        trio.Cancelled: before receiving, as `receive` would.
        trio.EndOfChannel: every sender closed and the buffer is empty.
        trio.ClosedResourceError: `channel` is closed.
    """
    await checkpoint_if_cancelled()
    try:
        return channel.receive_nowait()
    except trio.WouldBlock:
        return await channel.receive()
