"""Bounded mailboxes with an overflow policy, and the reply slot of an `ask`.

A mailbox is a FIFO of `(message, reply)` entries with exactly one consumer
(its actor) and any number of producers. It outlives the actor's restarts: the
supervisor owns it, so messages queued behind a crash are handled by the next
incarnation and `ActorRef`s stay valid.

Costs are kept to what trio itself charges. `put` does not yield while there
is room (it is still a cancellation point), and the consumer drains everything
already queued in one scheduling pass, so a burst costs one task switch rather
than one per message.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import outcome
import trio
from trio.lowlevel import (
    Abort,
    ParkingLot,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from runtime.deadletters import DeadLetterReason, DeadLetters
from runtime.deadlines import deadline_wheel
from runtime.errors import ActorStopped, InvalidPolicy, MailboxFull

__all__ = ["DEFAULT_MAILBOX_CAPACITY", "EXPIRED", "Mailbox", "MailboxSpec", "Overflow", "Reply"]

DEFAULT_MAILBOX_CAPACITY: Final = 1024


class Overflow(StrEnum):
    """What `put` does when the mailbox is full."""

    BLOCK = "block"
    """Wait for room: backpressure on the sender (the default)."""
    DROP_NEWEST = "drop_newest"
    """Drop the new message as a dead letter; an `ask` fails with `MailboxFull`."""
    FAIL = "fail"
    """Raise `MailboxFull` in the sender."""


@dataclass(frozen=True, slots=True)
class MailboxSpec:
    """Size and overflow policy of an actor's mailbox."""

    capacity: int = DEFAULT_MAILBOX_CAPACITY
    overflow: Overflow = Overflow.BLOCK

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise InvalidPolicy("mailbox.capacity", self.capacity, "an integer >= 1")


EXPIRED: Final = object()
"""What `Reply.wait_until` returns when the deadline passed first."""


class Reply:
    """The slot an `ask` waits on; the actor fills it exactly once.

    The asker parks on it with `wait_task_rescheduled`, which is cheaper than a
    `trio.Event` plus a result attribute, and its deadline is filed on the
    run's `DeadlineWheel` rather than in a cancel scope. A reply whose asker
    gave up (deadline or cancellation) is *abandoned*: the actor skips the
    message and any later result is dropped.
    """

    __slots__ = ("_key", "_outcome", "_task", "abandoned")

    def __init__(self) -> None:
        self._task: Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None
        self._key = -1
        self.abandoned = False

    @property
    def done(self) -> bool:
        """True once a value or an error has been set."""
        return self._outcome is not None

    def set_value(self, value: object) -> None:
        """Deliver the reply (ignored when already set or abandoned)."""
        self._set(outcome.Value(value))

    def set_error(self, error: BaseException) -> None:
        """Fail the ask with `error` (ignored when already set or abandoned)."""
        self._set(outcome.Error(error))

    def _set(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None or self.abandoned:
            return
        self._outcome = result
        task = self._task
        if task is not None:
            self._task = None
            if self._key >= 0:
                deadline_wheel().discard(self, self._key)
            reschedule(task, result)

    def expire(self) -> None:
        """The deadline passed: wake the asker with `EXPIRED` (called by the wheel)."""
        task = self._task
        if task is None or self._outcome is not None:
            return
        self._task = None
        self.abandoned = True
        reschedule(task, outcome.Value(EXPIRED))

    async def wait(self) -> Any:
        """Park until the reply is set; on cancellation the reply is abandoned."""
        return await self.wait_until(math.inf)

    async def wait_until(self, deadline: float) -> Any:
        """Park until the reply is set or trio's clock reaches `deadline`.

        Returns:
            The reply's value, or `EXPIRED` (and the reply is abandoned).
        """
        if self._outcome is not None:
            await cancel_shielded_checkpoint()
            return self._outcome.unwrap()
        self._task = current_task()
        wheel = deadline_wheel() if deadline != math.inf else None
        if wheel is not None:
            self._key = wheel.add(self, deadline)

        def abort(_raise_cancel: object) -> Abort:
            self._task = None
            self.abandoned = True
            if wheel is not None:
                wheel.discard(self, self._key)
            return Abort.SUCCEEDED

        return await wait_task_rescheduled(abort)


class Mailbox:
    """A bounded FIFO of `(message, reply)` entries read by one actor.

    Args:
        owner: the actor's name, for errors and dead letters.
        spec: capacity and overflow policy.
        dead_letters: where dropped and undeliverable messages are counted.
    """

    __slots__ = (
        "_closed",
        "_dead_letters",
        "_q",
        "_receiver",
        "_senders",
        "capacity",
        "overflow",
        "owner",
    )

    def __init__(self, owner: str, spec: MailboxSpec, dead_letters: DeadLetters) -> None:
        self.owner = owner
        self.capacity = spec.capacity
        self.overflow = spec.overflow
        self._dead_letters = dead_letters
        # Allocated on the first message: an idle actor should cost little.
        self._q: deque[tuple[Any, Reply | None]] | None = None
        self._receiver: Task | None = None
        self._senders: ParkingLot | None = None
        self._closed = False

    def __len__(self) -> int:
        q = self._q
        return 0 if q is None else len(q)

    @property
    def closed(self) -> bool:
        """True once `close` was called; nothing more is accepted."""
        return self._closed

    # -- producers ---------------------------------------------------------

    def try_put(self, message: object, reply: Reply | None) -> bool:
        """Enqueue without waiting; False when full or closed (nothing is recorded)."""
        if self._closed:
            return False
        q = self._q
        if q is None:
            q = self._q = deque()
        elif len(q) >= self.capacity:
            return False
        q.append((message, reply))
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task, outcome.Value(True))
        return True

    async def put(self, message: object, reply: Reply | None) -> None:
        """Enqueue, applying the overflow policy when full.

        A cancellation point. It yields to the scheduler only on the slow paths
        (full, closed), so a sender can enqueue a burst before the actor runs.

        Raises:
            MailboxFull: full and the policy is `fail`, or `drop_newest` for an ask.
        """
        await checkpoint_if_cancelled()
        if self.try_put(message, reply):
            return
        await self._put_slow(message, reply)

    def put_nowait(self, message: object, reply: Reply | None) -> None:
        """Enqueue from synchronous code; a full `block` mailbox raises `MailboxFull`."""
        if self.try_put(message, reply):
            return
        if self._closed:
            self._undeliverable(message, reply)
            return
        self._overflowed(message, reply)

    async def _put_slow(self, message: object, reply: Reply | None) -> None:
        while not self._closed and self.overflow is Overflow.BLOCK:
            q = self._q
            if q is not None and len(q) >= self.capacity:
                if self._senders is None:
                    self._senders = ParkingLot()
                await self._senders.park()
            elif self.try_put(message, reply):
                return
        if self._closed:
            self._undeliverable(message, reply)
            # Yield so a sender looping on a dead actor cannot starve the others.
            await cancel_shielded_checkpoint()
            return
        await cancel_shielded_checkpoint()
        self._overflowed(message, reply)

    def _overflowed(self, message: object, reply: Reply | None) -> None:
        error = MailboxFull(self.owner, self.capacity, self.overflow.value)
        if self.overflow is Overflow.DROP_NEWEST:
            self._dead_letters.record(self.owner, message, DeadLetterReason.MAILBOX_FULL)
            if reply is None:
                return
        raise error

    def _undeliverable(self, message: object, reply: Reply | None) -> None:
        self._dead_letters.record(self.owner, message, DeadLetterReason.ACTOR_STOPPED)
        if reply is not None:
            reply.set_error(ActorStopped(self.owner, type(message).__name__))

    # -- the consumer ------------------------------------------------------

    def pop(self) -> tuple[Any, Reply | None]:
        """Take the oldest entry (the caller checked `len(self)`); frees room for a blocked sender.

        Not a checkpoint: the actor drains what is queued in one scheduling pass.
        """
        q = self._q
        assert q is not None
        entry = q.popleft()
        senders = self._senders
        if senders:
            senders.unpark()
        return entry

    async def wait_nonempty(self, deadline: float = math.inf) -> bool:
        """Park the consumer until a message arrives, the mailbox closes or `wake` is called.

        Returns:
            False when trio's clock reached `deadline` first. The deadline is
            filed on the run's `DeadlineWheel`, not in a cancel scope: an idle
            actor then costs a dictionary entry rather than a scope.
        """
        if self._q or self._closed:
            await trio.lowlevel.checkpoint()
            return True
        self._q = None  # an idle actor should not hold an empty queue's block
        if deadline == math.inf:
            # The common idle wait: a bound method as the abort hook, no closure,
            # because every idle actor's parked frame holds on to it.
            self._receiver = current_task()
            woken: bool = await wait_task_rescheduled(self._abort_wait)
            return woken
        return await self._wait_until(deadline)

    def _abort_wait(self, _raise_cancel: object) -> Abort:
        self._receiver = None
        return Abort.SUCCEEDED

    async def _wait_until(self, deadline: float) -> bool:
        wheel = deadline_wheel()
        key = wheel.add(self, deadline)
        self._receiver = current_task()

        def abort(_raise_cancel: object) -> Abort:
            self._receiver = None
            wheel.discard(self, key)
            return Abort.SUCCEEDED

        woken: bool = await wait_task_rescheduled(abort)
        if woken:
            wheel.discard(self, key)
        return woken

    def expire(self) -> None:
        """The idle deadline passed (called by the wheel): wake the consumer with False."""
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task, outcome.Value(False))

    def wake(self) -> None:
        """Wake the parked consumer so it can look at its stop flag."""
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task, outcome.Value(True))

    def close(self) -> None:
        """Refuse new messages from now on; what is queued stays for the consumer."""
        if self._closed:
            return
        self._closed = True
        self.wake()
        if self._senders is not None:
            self._senders.unpark_all()

    def reopen(self) -> None:
        """Accept messages again (a stopped child is being started anew)."""
        self._closed = False

    def fail_pending(self) -> int:
        """Close and empty the mailbox: asks fail with `ActorStopped`, tells are dead letters.

        Returns:
            How many entries were discarded.
        """
        self.close()
        q = self._q
        self._q = None
        if not q:
            return 0
        for message, reply in q:
            self._undeliverable(message, reply)
        return len(q)
