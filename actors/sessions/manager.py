"""How channels reach sessions: by key, spawning the actor when it is not running.

`SessionManager.turn` finds (or starts, under the `sessions` dynamic
supervisor) the session actor of a key, asks it the turn, and streams the
answer's pieces to a callback while it runs. Every outcome is a `TurnResult`:
a crashed, restarted or stopped session becomes an error result, a full queue
a `busy` one; the caller never waits in silence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
import trio.lowlevel

from actors.config import Config
from actors.failover.client import ModelsClient
from actors.sessions.messages import (
    GetHistory,
    GetSessionInfo,
    ResetSession,
    SessionInfo,
    Turn,
    TurnDelta,
    TurnResult,
    session_actor_name,
    validate_key,
)
from actors.sessions.session import SessionActor, SessionDeps
from actors.sessions.store import STORE_NAME, ListEntries, SessionEntry
from runtime import (
    ActorCrashed,
    ActorGone,
    ActorRef,
    ActorRestarted,
    ActorStopped,
    AskTimeout,
    DuplicateChild,
    MailboxFull,
    MailboxSpec,
    Message,
    NameTaken,
    Overflow,
    Registry,
    Restart,
    StartFailed,
    SupervisorNotRunning,
    SupervisorRef,
    actor_spec,
    receive_soon,
)

__all__ = ["SessionManager"]

DELTA_BUFFER: Final = 256
_SPAWN_ATTEMPTS: Final = 50
"""Tries to reach a session that is passivating exactly as a message arrives."""
_STORE_TIMEOUT_S: Final = 30.0

OnDelta = Callable[[str], Awaitable[None]]


class SessionManager:
    """Routes turns and queries to session actors by key.

    Args:
        registry: where session actors (and the store) are found.
        sessions: the `sessions` dynamic supervisor.
        config: the whole config.
    """

    def __init__(self, registry: Registry, sessions: SupervisorRef, config: Config) -> None:
        self.registry = registry
        self.sessions = sessions
        self.config = config
        self.deps = SessionDeps.build(config, ModelsClient(registry))
        self.mailbox = MailboxSpec(capacity=config.sessions.queue_limit, overflow=Overflow.FAIL)

    async def ref(self, key: str) -> ActorRef[Message]:
        """The running session actor of `key`, started if needed.

        Raises:
            InvalidSessionKey: a malformed key.
            SupervisorNotRunning: the daemon is stopping.
        """
        validate_key(key)
        name = session_actor_name(key)
        for _ in range(_SPAWN_ATTEMPTS):
            ref = self.registry.get(name)
            if ref is not None and not ref.closed:
                return ref
            try:
                started = await self.sessions.start_child(
                    actor_spec(
                        name,
                        lambda: SessionActor(key, self.deps),
                        mailbox=self.mailbox,
                        restart=Restart.TRANSIENT,
                        shutdown_s=self.config.supervision.sessions.shutdown_s,
                    )
                )
            except DuplicateChild:
                await trio.lowlevel.checkpoint()  # the old actor is on its way out: try again
                continue
            except StartFailed as exc:
                if not isinstance(exc.__cause__, NameTaken):
                    raise
                await trio.lowlevel.checkpoint()
                continue
            assert started is not None
            return started
        raise SupervisorNotRunning(name, f"unreachable after {_SPAWN_ATTEMPTS} tries")

    async def turn(
        self,
        key: str,
        text: str,
        *,
        channel: str | None = None,
        channel_pin: str | None = None,
        on_delta: OnDelta | None = None,
        scope: trio.CancelScope | None = None,
        run_id: str | None = None,
    ) -> TurnResult:
        """Run one turn of `key`'s session; `on_delta` receives the answer as it streams.

        Raises:
            InvalidSessionKey: a malformed key (every other failure is a result).
        """
        validate_key(key)
        send, receive = trio.open_memory_channel[TurnDelta](DELTA_BUFFER)
        fields: dict[str, Any] = {"text": text, "channel": channel, "channel_pin": channel_pin}
        if run_id is not None:
            fields["run_id"] = run_id
        if scope is not None:
            fields["scope"] = scope
        turn = Turn(events=send if on_delta is not None else None, **fields)
        async with trio.open_nursery() as nursery:
            if on_delta is not None:
                nursery.start_soon(_pump, receive, on_delta)
            else:
                receive.close()
            try:
                result = await self._ask_turn(key, turn)
            finally:
                send.close()  # the session closes it too; this covers a session that died
        return result

    async def _ask_turn(self, key: str, turn: Turn) -> TurnResult:
        timeout_s = self.config.sessions.turn_timeout_s
        for _ in range(_SPAWN_ATTEMPTS):
            try:
                ref = await self.ref(key)
            except (StartFailed, SupervisorNotRunning) as exc:
                return _error(turn, "unavailable", str(exc), True)
            try:
                result = await ref.ask(turn, timeout_s)
            except ActorStopped:
                continue  # passivated before it took the turn: a fresh actor will
            except MailboxFull:
                return _error(turn, "busy", "the session has too many messages waiting", True)
            except ActorCrashed as exc:
                return _error(
                    turn,
                    "session_crashed",
                    f"the session failed during this turn and was restarted: {exc.__cause__}",
                    True,
                )
            except (ActorRestarted, ActorGone) as exc:
                return _error(turn, "session_restarted", str(exc), True)
            except AskTimeout:
                return _error(turn, "timeout", f"no answer within {timeout_s:g} s", True)
            assert isinstance(result, TurnResult)
            return result
        return _error(turn, "unavailable", "the session could not be reached", True)

    async def history(self, key: str, limit: int = 50) -> list[dict[str, Any]]:
        """The last `limit` message records of `key`'s current transcript."""
        ref = await self.ref(key)
        records = await ref.ask(GetHistory(limit=limit), _STORE_TIMEOUT_S)
        assert isinstance(records, list)
        return records

    async def reset(self, key: str) -> SessionEntry:
        """Start a new transcript for `key` (the old one is kept)."""
        ref = await self.ref(key)
        entry = await ref.ask(ResetSession(), _STORE_TIMEOUT_S)
        assert isinstance(entry, SessionEntry)
        return entry

    async def info(self, key: str) -> SessionInfo:
        """What `/status` would say."""
        ref = await self.ref(key)
        info = await ref.ask(GetSessionInfo(), _STORE_TIMEOUT_S)
        assert isinstance(info, SessionInfo)
        return info

    async def list(self) -> list[SessionEntry]:
        """Every session in the index, most recently updated first."""
        store = self.registry.lookup(STORE_NAME)
        entries = await store.ask(ListEntries(), _STORE_TIMEOUT_S)
        assert isinstance(entries, list)
        return entries

    def active(self) -> int:
        """Session actors running now."""
        try:
            return self.sessions.current.count_children().active
        except SupervisorNotRunning:
            return 0


async def _pump(receive: trio.MemoryReceiveChannel[TurnDelta], on_delta: OnDelta) -> None:
    async with receive:
        while True:
            try:
                delta = await receive_soon(receive)
            except trio.EndOfChannel:
                return
            await on_delta(delta.text)


def _error(turn: Turn, code: str, message: str, retryable: bool) -> TurnResult:
    return TurnResult(
        run_id=turn.run_id, state="error", error_code=code, error=message, retryable=retryable
    )
