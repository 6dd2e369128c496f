"""What channels and session actors say to each other, and session keys.

A turn is `ask`ed of the session actor (so a crash, restart or stop fails it at
once); its text streams back on `Turn.events` as `TurnDelta`s while it runs,
and the ask's reply is the `TurnResult`. Cancelling `Turn.scope` aborts it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import trio
from pydantic import ConfigDict, Field

from actors.errors import InvalidSessionKey
from actors.models import Attempt, Usage
from runtime import Message

__all__ = [
    "KEY_MAX_CHARS",
    "GetHistory",
    "GetSessionInfo",
    "ResetSession",
    "SessionInfo",
    "Turn",
    "TurnDelta",
    "TurnResult",
    "session_actor_name",
    "validate_key",
]

KEY_MAX_CHARS: Final = 256
_PART: Final = re.compile(r"^[^\s:]+$")


def validate_key(key: str) -> str:
    """Check a session key: `<agent>:<channel>:<kind>:<peer>` or `<agent>:<channel>:<peer>`.

    Raises:
        InvalidSessionKey: naming what is wrong.
    """
    if len(key) > KEY_MAX_CHARS:
        raise InvalidSessionKey(key[:40] + "...", f"longer than {KEY_MAX_CHARS} characters")
    parts = key.split(":")
    if len(parts) not in (3, 4):
        raise InvalidSessionKey(key, f"{len(parts)} part(s)")
    for part in parts:
        if not _PART.match(part):
            raise InvalidSessionKey(key, f"part {part!r} is empty or contains whitespace")
    return key


def session_actor_name(key: str) -> str:
    """The actor (and registry) name of a session."""
    return f"session:{key}"


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class TurnDelta:
    """More answer text of a running turn (one per piece: a dataclass, not validated again)."""

    run_id: str
    text: str


class Turn(Message):
    """One user message for a session (a chat command when it starts with `/`).

    Attributes:
        text: what the user wrote.
        run_id: names this run in events and the transcript.
        channel: where it came from (`ws`, `http`, `telegram`), for the index and pins.
        channel_pin: the channel's preferred model, if it has one.
        events: where `TurnDelta`s go while the turn runs (None: not streamed).
        scope: cancel it to abort the turn.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    text: str
    run_id: str = Field(default_factory=new_run_id)
    channel: str | None = None
    channel_pin: str | None = None
    events: trio.MemorySendChannel[TurnDelta] | None = None
    scope: trio.CancelScope = Field(default_factory=trio.CancelScope)


class TurnResult(Message):
    """How a turn ended: `final` (answered), `error`, or `aborted`.

    `command` names the chat command when the turn was one (no model was asked).
    `partial` is what was streamed before an error or an abort.
    """

    run_id: str
    state: Literal["final", "error", "aborted"]
    text: str = ""
    model: str | None = None
    attempts: tuple[Attempt, ...] = ()
    usage: Usage | None = None
    error_code: str | None = None
    error: str | None = None
    retryable: bool = False
    command: str | None = None


class GetHistory(Message):
    """-> the last `limit` message records of the current transcript."""

    limit: int = Field(default=50, ge=1, le=10_000)


class ResetSession(Message):
    """Start a new transcript (as `/reset`); -> the new `SessionEntry`."""


class GetSessionInfo(Message):
    """-> `SessionInfo`."""


class SessionInfo(Message):
    """What `/status` shows."""

    key: str
    session_id: str
    model: str
    pinned: bool
    turns: int
    token_estimate: int
    compactions: int
    last_model: str | None
    last_failover: str | None
    compacting: bool
