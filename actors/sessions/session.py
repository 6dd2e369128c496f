"""The session actor: one conversation, one turn at a time, restored from disk.

A session actor is spawned on its key's first message, handles turns one at a
time (later messages wait in its bounded mailbox), and passivates itself
after `sessions.idle_s` without a message; the next message restores it from
the store. Every turn is persisted: the user's message before the model is
asked, then the answer (or the error, or the abort).

A crash mid-turn fails that turn's `ask` at once (the channel tells the user),
and the supervisor restarts the actor, which reloads its history from disk.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

import trio

from actors.clock import WallClock
from actors.config import CompactionConfig, Config, _model_name
from actors.errors import ErrorClass, ModelCallFailed
from actors.events import (
    SESSION_COMPACTED,
    SESSION_CREATED,
    SESSION_RESET,
    SESSION_UPDATED,
    SessionCompacted,
    SessionCreated,
    SessionReset,
    SessionUpdated,
)
from actors.failover.client import ModelsClient
from actors.models import ModelResult
from actors.sessions import compaction
from actors.sessions.commands import HELP, Command, parse_command
from actors.sessions.messages import (
    GetHistory,
    GetSessionInfo,
    ResetSession,
    SessionInfo,
    Turn,
    TurnDelta,
    TurnResult,
)
from actors.sessions.runner import EmbeddedRunner
from actors.sessions.store import (
    STORE_NAME,
    AppendRecords,
    GetEntry,
    PutEntry,
    ReadTranscript,
    SessionEntry,
)
from actors.sessions.transcript import RECORD_VERSION, History, history_from
from actors.sessions.transcript import Turn as HistoryTurn
from runtime import Actor, ActorRef, MailboxFull, Message, send_soon

__all__ = ["SessionActor", "SessionDeps"]

log = logging.getLogger("callboard.sessions")

_MEMORY_TURNS_SLACK: Final = 8
"""Turns kept in memory beyond what compaction would keep, so it has work to see."""


@dataclass(frozen=True, slots=True)
class SessionDeps:
    """What every session actor needs, shared by all of them."""

    config: Config
    models: ModelsClient
    runner: EmbeddedRunner

    @classmethod
    def build(cls, config: Config, models: ModelsClient) -> SessionDeps:
        return cls(config, models, EmbeddedRunner(config.agent, models))


def _failover_summary(result: ModelResult) -> str | None:
    failed = [a for a in result.attempts if a.reason != "ok" and not a.reason.startswith("skipped")]
    if not failed:
        return None
    first = failed[0]
    return f"{first.model} {first.reason} -> {result.model}"


class SessionActor(Actor[Message]):
    """One conversation. See the module docstring.

    Args:
        key: the session key.
        deps: config and the way to the models.
    """

    background = True

    _unannounced = False
    """True from the creation of a new session to its first message (`session:created`)."""

    def __init__(self, key: str, deps: SessionDeps) -> None:
        # Few attributes: ten thousand of these are alive at once.
        self.key = key
        self.deps = deps
        self.history = History()
        self.entry: SessionEntry | None = None
        self._compacting = False
        self._compaction_done: trio.Event | None = None  # made only when one runs

    @property
    def config(self) -> Config:
        return self.deps.config

    @property
    def compaction_config(self) -> CompactionConfig:
        return self.deps.config.agent.compaction

    @property
    def idle_timeout_s(self) -> float:  # type: ignore[override]
        sessions, compaction = self.deps.config.sessions, self.deps.config.agent.compaction
        return min(sessions.idle_s, compaction.idle_s)

    @property
    def timeout_s(self) -> float:
        return self.deps.config.sessions.turn_timeout_s

    @property
    def runner(self) -> EmbeddedRunner:
        return self.deps.runner

    # -- life ---------------------------------------------------------------------------

    async def on_start(self) -> None:
        self.clock = WallClock()
        self.store: ActorRef[Message] = self.ctx.services.registry.lookup(STORE_NAME)
        self.hooks = self.ctx.services.hooks
        self.last_activity = trio.current_time()
        entry = await self.store.ask(GetEntry(key=self.key), self.timeout_s)
        if entry is None:
            await self._create(previous_ids=(), channel=None)
            self._unannounced = True  # session:created waits for the first message's channel
            return
        self.entry = entry
        records = await self.store.ask(ReadTranscript(session_id=entry.session_id), self.timeout_s)
        self.history = history_from(records, keep_turns=self._memory_turns())

    def _memory_turns(self) -> int:
        c = self.compaction_config
        return max(self.config.agent.history_turns, c.after_turns) + _MEMORY_TURNS_SLACK

    @property
    def _entry(self) -> SessionEntry:
        assert self.entry is not None, "on_start sets it"
        return self.entry

    async def _create(self, *, previous_ids: tuple[str, ...], channel: str | None) -> None:
        now = self.clock.now()
        session_id = uuid.uuid4().hex
        header = {
            "type": "session",
            "v": RECORD_VERSION,
            "key": self.key,
            "session_id": session_id,
            "created_at": now,
            "ts": now,
            "channel": channel,
        }
        await self._append(session_id, [header])
        self.entry = SessionEntry(
            key=self.key,
            session_id=session_id,
            created_at=now,
            updated_at=now,
            channel=channel,
            previous_ids=previous_ids,
        )
        self.history = History(key=self.key)
        await self.store.tell(PutEntry(entry=self.entry))

    async def _append(self, session_id: str, records: list[dict[str, Any]]) -> None:
        await self.store.ask(
            AppendRecords(session_id=session_id, records=tuple(records)), self.timeout_s
        )

    async def _update_entry(self, **changes: Any) -> None:
        self.entry = dataclasses.replace(self._entry, updated_at=self.clock.now(), **changes)
        await self.store.tell(PutEntry(entry=self.entry))

    async def on_idle(self) -> None:
        idle_for = trio.current_time() - self.last_activity
        if idle_for >= self.compaction_config.idle_s:
            self._maybe_compact(idle=True)
        if idle_for >= self.config.sessions.idle_s and not self._compacting:
            log.debug("session %s idle for %.0f s: passivating", self.key, idle_for)
            self.stop()

    # -- messages -------------------------------------------------------------------------

    async def receive(self, message: Message) -> object:
        self.last_activity = trio.current_time()
        if self._unannounced:
            self._unannounced = False
            channel = message.channel if isinstance(message, Turn) else None
            self.hooks.notify(
                SESSION_CREATED, SessionCreated(self.key, self._entry.session_id, channel)
            )
        if isinstance(message, Turn):
            try:
                return await self._turn(message)
            finally:
                if message.events is not None:
                    message.events.close()
                self.last_activity = trio.current_time()
        if isinstance(message, GetHistory):
            records = await self.store.ask(
                ReadTranscript(session_id=self._entry.session_id), self.timeout_s
            )
            messages = [r for r in records if r.get("type") == "message"]
            return messages[-message.limit :]
        if isinstance(message, ResetSession):
            await self._reset()
            return self.entry
        if isinstance(message, GetSessionInfo):
            return self.info()
        raise TypeError(f"session {self.key}: unexpected message {type(message).__name__}")

    def info(self) -> SessionInfo:
        """What `/status` reports."""
        entry = self._entry
        return SessionInfo(
            key=self.key,
            session_id=entry.session_id,
            model=entry.model_pin or self.config.models.primary,
            pinned=entry.model_pin is not None,
            turns=self.history.total_turns,
            token_estimate=self.history.token_estimate(),
            compactions=entry.compactions,
            last_model=entry.last_model,
            last_failover=entry.last_failover,
            compacting=self._compacting,
        )

    # -- a turn ---------------------------------------------------------------------------

    async def _turn(self, turn: Turn) -> TurnResult:
        command = parse_command(turn.text)
        if command is not None:
            reply = await self._command(command)
            return TurnResult(run_id=turn.run_id, state="final", text=reply, command=command.name)
        entry = self._entry
        if turn.channel and entry.channel is None:
            await self._update_entry(channel=turn.channel)
        number = self.history.total_turns + 1
        user_record = {"type": "message", "v": RECORD_VERSION, "role": "user",
                       "content": turn.text, "turn": number, "ts": self.clock.now(),
                       "run_id": turn.run_id, "channel": turn.channel}  # fmt: skip
        streamed = ""
        forward = turn.events

        async def on_delta(text: str) -> None:
            nonlocal streamed, forward
            streamed += text
            if forward is not None:
                try:
                    await send_soon(forward, TurnDelta(run_id=turn.run_id, text=text))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    forward = None  # the caller stopped listening; the answer is still kept

        result: ModelResult | None = None
        failure: ModelCallFailed | None = None
        # The user's message is queued for the disk without waiting, so it is
        # written while the model thinks: the store keeps a session's appends in
        # order, and the turn's last record, awaited below, is acknowledged only
        # once both are on disk. Queued now, it is kept even if this actor dies.
        append = AppendRecords(session_id=self._entry.session_id, records=(user_record,))
        try:
            self.store.tell_nowait(append)
        except MailboxFull:
            await self.store.ask(append, self.timeout_s)
        with turn.scope:
            try:
                result = await self._answer(turn, on_delta)
            except ModelCallFailed as exc:
                failure = exc
        if result is None and failure is None:  # aborted
            await self._append(
                self._entry.session_id,
                [{"type": "aborted", "v": RECORD_VERSION, "turn": number, "ts": self.clock.now(),
                  "run_id": turn.run_id, "partial": streamed}],
            )  # fmt: skip
            return TurnResult(run_id=turn.run_id, state="aborted", text=streamed)
        if failure is not None:
            await self._append(
                self._entry.session_id,
                [{"type": "error", "v": RECORD_VERSION, "turn": number, "ts": self.clock.now(),
                  "run_id": turn.run_id, "code": failure.kind.value, "message": failure.detail,
                  "partial": failure.partial}],
            )  # fmt: skip
            return TurnResult(
                run_id=turn.run_id,
                state="error",
                text=failure.partial,
                attempts=failure.attempts,
                error_code=failure.kind.value,
                error=failure.detail,
                retryable=failure.kind is not ErrorClass.CONTENT_FILTER,
            )
        assert result is not None
        failover = _failover_summary(result)
        await self._append(
            self._entry.session_id,
            [{"type": "message", "v": RECORD_VERSION, "role": "assistant", "content": result.text,
              "turn": number, "ts": self.clock.now(), "run_id": turn.run_id, "model": result.model,
              "usage": result.usage.model_dump(), "failover": failover,
              "attempts": [a.model_dump(exclude_defaults=True) for a in result.attempts]}],
        )  # fmt: skip
        self.history.turns.append(HistoryTurn(number, turn.text, result.text))
        self.history.total_turns = number
        if len(self.history.turns) > self._memory_turns():
            del self.history.turns[0]
        await self._update_entry(
            turns=number,
            last_model=result.model,
            last_failover=failover or self._entry.last_failover,
        )
        self.hooks.notify(
            SESSION_UPDATED,
            SessionUpdated(self.key, self._entry.session_id, number, result.model, turn.run_id),
        )
        self._maybe_compact(idle=False)
        return TurnResult(
            run_id=turn.run_id,
            state="final",
            text=result.text,
            model=result.model,
            attempts=result.attempts,
            usage=result.usage,
        )

    async def _answer(self, turn: Turn, on_delta: Any) -> ModelResult:
        """Ask the models; a context overflow compacts the history and retries once."""
        for attempt in (1, 2):
            request = self.runner.build_request(
                self.history,
                turn.text,
                session_key=self.key,
                session_pin=self._entry.model_pin,
                channel=turn.channel,
                channel_pin=turn.channel_pin,
            )
            try:
                return await self.runner.answer(request, on_delta)
            except ModelCallFailed as exc:
                if exc.kind is not ErrorClass.CONTEXT_OVERFLOW or attempt == 2 or exc.partial:
                    raise
                log.info("session %s: context overflow; compacting, then retrying", self.key)
                if self._compaction_done is not None:
                    await self._compaction_done.wait()
                if await self._compact(force=True) is None:
                    raise
        raise AssertionError("unreachable")

    # -- compaction -----------------------------------------------------------------------

    def _maybe_compact(self, *, idle: bool) -> None:
        if self._compacting or not compaction.due(self.history, self.compaction_config, idle=idle):
            return
        self.nursery.start_soon(self._compact_in_background)

    async def _compact_in_background(self) -> None:
        try:
            await self._compact()
        except ModelCallFailed as exc:
            log.warning("session %s: compaction failed, history kept as is: %s", self.key, exc)

    async def _compact(self, *, force: bool = False) -> compaction.CompactionPlan | None:
        """Summarize older turns; None when there was nothing to do (or it was moot)."""
        if self._compacting:
            return None
        plan = compaction.plan_compaction(self.history, self.compaction_config)
        if plan is None and force and self.history.since_summary():
            keep_none = self.compaction_config.model_copy(update={"keep_turns": 0})
            plan = compaction.plan_compaction(self.history, keep_none)
        if plan is None:
            return None
        self._compacting = True
        self._compaction_done = trio.Event()
        try:
            session_id = self._entry.session_id
            request = compaction.summary_request(
                self.history, plan, session_key=self.key, model=self._entry.model_pin
            )
            result = await self.deps.models.complete(request)
            if self._entry.session_id != session_id:
                return None  # reset meanwhile: the summary belongs to an old transcript
            await self._append(
                session_id, [compaction.compaction_record(result.text, plan, result.model)]
            )
            self.history.summary = result.text
            self.history.through_turn = plan.through_turn
            self.history.turns = [t for t in self.history.turns if t.number > plan.through_turn]
            self.history.compactions += 1
            await self._update_entry(compactions=self._entry.compactions + 1)
            self.hooks.notify(
                SESSION_COMPACTED,
                SessionCompacted(self.key, session_id, plan.through_turn, plan.kept_turns,
                                 len(result.text)),
            )  # fmt: skip
            return plan
        finally:
            self._compacting = False
            self._compaction_done.set()
            self._compaction_done = None

    # -- commands ----------------------------------------------------------------------------

    async def _command(self, command: Command) -> str:
        name, argument = command.name, command.argument
        if name in ("new", "reset"):
            old = self._entry.session_id
            await self._reset()
            return f"New session started (the previous one, {old[:8]}, is kept; no model pinned)."
        if name == "model":
            return await self._model_command(argument)
        if name == "status":
            info = self.info()
            return (
                f"model: {info.model} ({'pinned' if info.pinned else 'default'})\n"
                f"turns: {info.turns}\n"
                f"tokens ≈ {info.token_estimate}\n"
                f"last model: {info.last_model or '-'}\n"
                f"last failover: {info.last_failover or 'none'}\n"
                f"compactions: {info.compactions}{' (one running)' if info.compacting else ''}"
            )
        if name == "compact":
            if self._compacting:
                return "A compaction is already running."
            try:
                plan = await self._compact(force=True)
            except ModelCallFailed as exc:
                return f"Compaction failed ({exc.kind.value}); the history is unchanged."
            if plan is None:
                return "Nothing to compact."
            return f"Compacted {len(plan.summarize)} turn(s) into a summary."
        if name == "help":
            return HELP
        return f"Unknown command /{name}. {HELP}"

    async def _model_command(self, argument: str) -> str:
        entry = self._entry
        if not argument:
            pinned = entry.model_pin
            default = self.config.models.primary
            last = entry.last_model or "-"
            if pinned:
                return f"Pinned: {pinned} (default {default}; last answer from {last})"
            return f"Default: {default} (not pinned; last answer from {last})"
        if argument in ("default", "clear"):
            await self._update_entry(model_pin=None)
            return f"Unpinned: back to {self.config.models.primary}."
        model = self.config.models.aliases.get(argument, argument)
        if model != "auto":
            try:
                _model_name(model)
            except ValueError as exc:
                return f"Cannot pin: {exc}."
            provider = model.partition("/")[0]
            if provider not in self.config.providers:
                known = ", ".join(sorted(self.config.providers))
                return f"Cannot pin {model}: no provider {provider!r} (configured: {known})."
        await self._update_entry(model_pin=model)
        return f"Pinned {model} for this session."

    async def _reset(self) -> None:
        old = self._entry
        await self._create(previous_ids=(*old.previous_ids, old.session_id), channel=old.channel)
        self.hooks.notify(
            SESSION_RESET, SessionReset(self.key, old.session_id, self._entry.session_id)
        )
