"""The mailbox on its own: capacity, overflow policies, closing."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from runtime import (
    ActorStopped,
    DeadLetters,
    InvalidPolicy,
    Mailbox,
    MailboxFull,
    MailboxSpec,
    Overflow,
    Reply,
)
from tests.helpers import wait_until


def mailbox(capacity: int = 2, overflow: Overflow = Overflow.BLOCK) -> tuple[Mailbox, DeadLetters]:
    dead = DeadLetters()
    return Mailbox("box", MailboxSpec(capacity, overflow), dead), dead


def test_capacity_must_be_positive() -> None:
    with pytest.raises(
        InvalidPolicy, match=r"mailbox.capacity: 0 is invalid; expected an integer >= 1"
    ):
        MailboxSpec(capacity=0)


def test_overflow_parses_from_its_config_spelling() -> None:
    assert Overflow("drop_newest") is Overflow.DROP_NEWEST
    with pytest.raises(ValueError, match="drop_oldest"):
        Overflow("drop_oldest")


async def test_block_waits_for_room(autojump_clock: MockClock) -> None:
    box, _ = mailbox(capacity=2)
    await box.put("a", None)
    await box.put("b", None)
    done = trio.Event()

    async def third() -> None:
        await box.put("c", None)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(third)
        await trio.sleep(5)
        assert not done.is_set() and len(box) == 2
        assert box.pop() == ("a", None)
        await done.wait()
    assert [box.pop()[0] for _ in range(len(box))] == ["b", "c"]


async def test_a_blocked_sender_can_be_cancelled(autojump_clock: MockClock) -> None:
    box, _ = mailbox(capacity=1)
    await box.put("a", None)
    with trio.move_on_after(3) as scope:
        await box.put("b", None)
    assert scope.cancelled_caught
    assert len(box) == 1


async def test_drop_newest_counts_a_dead_letter_and_fails_an_ask(autojump_clock: MockClock) -> None:
    box, dead = mailbox(capacity=1, overflow=Overflow.DROP_NEWEST)
    await box.put("kept", None)
    await box.put("dropped", None)
    reply = Reply()
    with pytest.raises(
        MailboxFull, match=r"mailbox of 'box' is full \(1 messages, overflow policy 'drop_newest'\)"
    ):
        await box.put("asked", reply)
    assert dead.counts() == {"mailbox_full": 2}
    assert len(box) == 1


async def test_fail_raises_in_the_sender(autojump_clock: MockClock) -> None:
    box, dead = mailbox(capacity=1, overflow=Overflow.FAIL)
    await box.put("a", None)
    with pytest.raises(MailboxFull, match="'fail'"):
        await box.put("b", None)
    with pytest.raises(MailboxFull):
        box.put_nowait("c", None)
    assert dead.total == 0


def test_put_nowait_on_a_full_blocking_mailbox_raises() -> None:
    box, _ = mailbox(capacity=1)
    box.put_nowait("a", None)
    with pytest.raises(MailboxFull, match="'block'"):
        box.put_nowait("b", None)


async def test_closing_fails_queued_asks_and_dead_letters_tells(autojump_clock: MockClock) -> None:
    box, dead = mailbox(capacity=4)
    reply = Reply()
    await box.put("tell", None)
    await box.put("ask", reply)
    assert box.fail_pending() == 2
    assert box.closed
    with pytest.raises(ActorStopped, match="ask str to 'box' failed"):
        await reply.wait()
    late = Reply()
    await box.put("late", late)
    with pytest.raises(ActorStopped):
        await late.wait()
    assert dead.counts() == {"actor_stopped": 3}
    box.reopen()
    await box.put("again", None)
    assert len(box) == 1


async def test_closing_releases_blocked_senders(autojump_clock: MockClock) -> None:
    box, dead = mailbox(capacity=1)
    await box.put("a", None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.put, "b", None)
        await wait_until(lambda: box._senders is not None and len(box._senders) == 1)
        box.close()
    assert dead.counts() == {"actor_stopped": 1}


async def test_an_abandoned_reply_ignores_a_late_value(autojump_clock: MockClock) -> None:
    reply = Reply()
    with trio.move_on_after(1):
        await reply.wait()
    assert reply.abandoned
    reply.set_value(42)
    assert not reply.done


async def test_the_consumer_parks_until_a_message_arrives(autojump_clock: MockClock) -> None:
    box, _ = mailbox()
    got: list[object] = []

    async def consumer() -> None:
        await box.wait_nonempty()
        got.append(box.pop()[0])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.sleep(10)
        assert got == []
        box.put_nowait("hello", None)
    assert got == ["hello"]
