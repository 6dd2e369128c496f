"""Actors: a class with a `receive` method, a mailbox, and a reference to reach it.

Subclass `Actor`, implement `receive`, and hand `actor_spec(name, factory)` to a
supervisor. Others reach the actor through its `ActorRef`:

* `await ref.tell(msg)` enqueues and returns (the mailbox's overflow policy
  decides what happens when it is full);
* `await ref.ask(msg, timeout_s)` waits for `receive`'s return value, and fails
  at once with an `ActorGone` error when the actor crashes on the message, is
  restarted or stopped while holding it, or its mailbox is closed.

An exception in `receive` crashes the actor: the asker of that message gets
`ActorCrashed` with the original error chained, and the supervisor restarts the
actor per its policy. Messages queued behind it stay in the mailbox for the
next incarnation. Exceptions listed in `Actor.reply_errors` are instead sent to
the asker as they are, and the actor goes on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ClassVar, Final, Generic, TypeVar

import trio
from trio.lowlevel import checkpoint, checkpoint_if_cancelled

from runtime.deadletters import DeadLetterReason
from runtime.errors import ActorCrashed, ActorRestarted, ActorStopped, AskTimeout
from runtime.mailbox import EXPIRED, Mailbox, MailboxSpec, Reply
from runtime.spec import DEFAULT_SHUTDOWN_S, ChildContext, ChildSpec, NodeKind, Restart

__all__ = ["DEFAULT_ON_STOP_BUDGET_S", "Actor", "ActorRef", "actor_spec", "unwrap_group"]

log = logging.getLogger("callboard.runtime.actor")

M = TypeVar("M")

DEFAULT_ON_STOP_BUDGET_S: Final = 2.0
"""How long `on_stop` may run, shielded, once the actor is on its way out."""


class ActorRef(Generic[M]):
    """The address of an actor: its mailbox, valid across restarts.

    Args:
        mailbox: the actor's mailbox (owned by its supervisor).
    """

    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._mailbox.owner

    @property
    def depth(self) -> int:
        """Messages waiting in the mailbox now."""
        return len(self._mailbox)

    @property
    def closed(self) -> bool:
        """True when the actor is gone for good and its mailbox refuses messages."""
        return self._mailbox.closed

    async def tell(self, message: M) -> None:
        """Enqueue `message` without waiting for it to be handled.

        A cancellation point that yields only when the mailbox is full or closed.
        A stopped actor's messages become dead letters.

        Raises:
            MailboxFull: the mailbox is full and its policy is `fail`.
        """
        await checkpoint_if_cancelled()
        mailbox = self._mailbox
        if not mailbox.try_put(message, None):
            await mailbox.put(message, None)

    def tell_nowait(self, message: M) -> None:
        """Enqueue from synchronous code; never waits.

        Raises:
            MailboxFull: the mailbox is full (whatever its policy, except
                `drop_newest`, which drops and counts the message).
        """
        self._mailbox.put_nowait(message, None)

    async def ask(self, message: M, timeout_s: float) -> Any:
        """Send `message` and wait at most `timeout_s` for the actor's reply.

        Returns:
            What the actor's `receive` returned for this message.

        Raises:
            AskTimeout: no reply within `timeout_s` (the message is skipped if
                the actor had not reached it yet).
            ActorCrashed: `receive` raised on this message (cause chained).
            ActorRestarted: the actor was restarted while holding it.
            ActorStopped: the actor is stopped or its mailbox closed.
            MailboxFull: the mailbox is full and its policy does not wait.
        """
        reply = Reply()
        mailbox = self._mailbox
        deadline = trio.current_time() + timeout_s
        if not mailbox.try_put(message, reply):
            # The slow path (a full mailbox): waiting for room is bounded too.
            with trio.move_on_after(timeout_s) as scope:
                await mailbox.put(message, reply)
            if scope.cancelled_caught:  # still waiting for room: nothing was queued
                raise AskTimeout(mailbox.owner, type(message).__name__, timeout_s)
        result = await reply.wait_until(deadline)
        if result is EXPIRED:
            raise AskTimeout(mailbox.owner, type(message).__name__, timeout_s)
        return result

    def __repr__(self) -> str:
        return f"ActorRef({self.name!r})"


class Actor(Generic[M]):
    """Base class of actors. Override `receive`; `on_start` and `on_stop` are optional.

    The supervisor builds a fresh instance for every (re)start, so state kept on
    `self` starts clean after a crash. `self.ctx` and `self.ref` are set before
    `on_start` runs.
    """

    reply_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """Exceptions from `receive` that go back to the asker instead of crashing."""

    on_stop_budget_s: float = DEFAULT_ON_STOP_BUDGET_S
    """How long `on_stop` may take; it runs shielded from cancellation (set per instance)."""

    idle_timeout_s: float | None = None
    """Call `on_idle` after this long without a message (None: never; set per instance)."""

    background: ClassVar[bool] = False
    """Give the actor a nursery (`self.nursery`) for work that outlives one message.

    Its tasks live and die with the actor, and an exception in one crashes the
    actor. When the actor stops they are cancelled, unless `drain_background`.
    """

    drain_background: ClassVar[bool] = False
    """On stop, let background tasks finish (within the stop budget) instead of
    cancelling them: for work in flight, such as a provider's calls."""

    ctx: ChildContext
    ref: ActorRef[M]
    nursery: trio.Nursery

    async def on_start(self) -> None:
        """Prepare; the actor counts as started (and its starter resumes) after this."""

    async def receive(self, message: M) -> object:
        """Handle one message; the return value is the reply to an `ask`."""
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Release what `on_start` acquired; runs on every exit, shielded."""

    async def on_idle(self) -> None:
        """No message for `idle_timeout_s`: passivate, flush, or do nothing."""

    def stop(self) -> None:
        """Stop this actor for good once it has handled what is already queued."""
        self.ctx.request_stop(final=True)

    def defer_reply(self) -> Reply | None:
        """Take over the reply of the message being handled (None for a `tell`).

        `receive` may then return at once and the actor answers later with
        `reply.set_value(...)` or `reply.set_error(...)`, as gen_server's
        `noreply` does: the asker keeps waiting until then (or its deadline).
        The actor must settle every reply it took, even when it stops.
        """
        current = self.ctx.current
        self.ctx.current = None
        return None if current is None else current[1]


def unwrap_group(exc: BaseException) -> BaseException:
    """The single exception inside (nested) one-exception groups, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _run_actor(
    factory: Callable[[], Actor[Any]],
    ctx: ChildContext,
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    mailbox = ctx.mailbox
    assert mailbox is not None, "actor_spec gives every actor a mailbox"
    actor = factory()
    actor.ctx = ctx
    actor.ref = ActorRef(mailbox)
    try:
        if actor.background:
            async with trio.open_nursery() as nursery:
                actor.nursery = nursery
                await actor.on_start()
                task_status.started()
                await _message_loop(actor, ctx, mailbox)
                if not actor.drain_background:
                    nursery.cancel_scope.cancel()
        else:
            await actor.on_start()
            task_status.started()
            await _message_loop(actor, ctx, mailbox)
    except Exception as exc:
        current = ctx.current
        if current is not None and current[1] is not None:
            cause = unwrap_group(exc)
            crashed = ActorCrashed(ctx.name, type(current[0]).__name__, cause)
            crashed.__cause__ = cause
            current[1].set_error(crashed)
        ctx.current = None
        raise
    finally:
        current = ctx.current
        if current is not None:
            # Cancelled while holding a message: it will never be answered.
            message, reply = current
            ctx.current = None
            if reply is None:
                ctx.services.dead_letters.record(ctx.name, message, DeadLetterReason.INTERRUPTED)
            else:
                gone = ActorStopped if ctx.stop_final else ActorRestarted
                reply.set_error(gone(ctx.name, type(message).__name__))
        with trio.move_on_after(actor.on_stop_budget_s) as scope:
            scope.shield = True
            try:
                await actor.on_stop()
            except Exception:
                log.exception("actor %s: on_stop failed", ctx.path)


async def _message_loop(actor: Actor[Any], ctx: ChildContext, mailbox: Mailbox) -> None:
    receive = actor.receive
    reply_errors = actor.reply_errors
    record = ctx.services.dead_letters.record
    entry: tuple[Any, Reply | None] | None = None
    message: Any = None
    reply: Reply | None = None
    value: object = None
    while True:
        pending = len(mailbox)
        if not pending:
            if ctx.stop_requested or mailbox.closed:
                return
            # An idle actor must not keep its last message and answer alive.
            entry = message = reply = value = None
            idle_s = actor.idle_timeout_s
            if idle_s is None:
                await mailbox.wait_nonempty()
            elif not await mailbox.wait_nonempty(trio.current_time() + idle_s):
                await actor.on_idle()
            continue
        if ctx.stop_requested and not ctx.stop_final:
            return  # stopped for a restart: the queue is the next incarnation's
        # Drain what is queued now in one scheduling pass: no checkpoint per message.
        for _ in range(pending):
            entry = mailbox.pop()
            message, reply = entry
            if reply is None:
                ctx.current = entry
                await receive(message)
            elif reply.abandoned:
                record(ctx.name, message, DeadLetterReason.ASK_EXPIRED)
                continue
            else:
                ctx.current = entry
                try:
                    value = await receive(message)
                except reply_errors as exc:
                    if ctx.current is entry:  # else the actor deferred the reply
                        reply.set_error(exc)
                else:
                    if ctx.current is entry:
                        reply.set_value(value)
            ctx.current = None
            if ctx.stop_requested and not ctx.stop_final:
                return
        if len(mailbox):
            await checkpoint()  # one yield per batch keeps the actor fair to others


def actor_spec(
    name: str,
    factory: Callable[[], Actor[Any]],
    *,
    mailbox: MailboxSpec | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown_s: float = DEFAULT_SHUTDOWN_S,
    register: bool = True,
) -> ChildSpec:
    """A child spec that runs `factory()` as an actor.

    Args:
        name: the child's (and, with `register`, the registry's) name.
        factory: builds a fresh actor for every (re)start.
        mailbox: capacity and overflow policy (default: 1024, block).
        restart: permanent, transient or temporary.
        shutdown_s: after a stop request, how long before it is cancelled.
        register: register the actor's ref in the registry under `name`.
    """
    return ChildSpec(
        name=name,
        start=functools.partial(_run_actor, factory),
        restart=restart,
        shutdown_s=shutdown_s,
        kind=NodeKind.ACTOR,
        mailbox=mailbox or MailboxSpec(),
        register=register,
    )
