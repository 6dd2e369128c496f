"""The lifecycle hook catalogue: every event's name and typed payload.

Payloads are frozen dataclasses; an interceptor replaces one with
`dataclasses.replace(payload, field=...)`. The events a part emits are listed
with it here so that plugins have one place to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from actors.models import Attempt, Classification, ModelResult
from runtime import (
    ACTOR_ESCALATED,
    ACTOR_RESTARTED,
    ChildRestarted,
    HookEvent,
    SupervisorEscalated,
)

__all__ = [
    "ACTOR_ESCALATED",
    "ACTOR_RESTARTED",
    "CATALOGUE",
    "GATEWAY_START",
    "GATEWAY_STOP",
    "INTERCEPTABLE",
    "MESSAGE_RECEIVED",
    "MESSAGE_SENDING",
    "MESSAGE_SENT",
    "MODEL_FAILOVER",
    "MODEL_REQUEST",
    "MODEL_RESPONSE",
    "MODEL_SELECT",
    "SESSION_COMPACTED",
    "SESSION_CREATED",
    "SESSION_RESET",
    "SESSION_UPDATED",
    "ChildRestarted",
    "GatewayStart",
    "GatewayStop",
    "MessageReceived",
    "MessageSending",
    "MessageSent",
    "ModelFailover",
    "ModelRequestSent",
    "ModelResponse",
    "ModelSelect",
    "SessionCompacted",
    "SessionCreated",
    "SessionReset",
    "SessionUpdated",
    "SupervisorEscalated",
]


@dataclass(frozen=True, slots=True)
class ModelSelect:
    """`model:select` (interceptor): the chain chosen for a request; replace `chain` to change it.

    Attributes:
        request_id: the request.
        session_key: the session asking, if any.
        channel: the channel it came from, if any.
        source: what chose the model: request, session, channel, classifier or default.
        chain: the models to try, in order.
        classification: the classifier's verdict when it was consulted.
    """

    request_id: str
    session_key: str | None
    channel: str | None
    source: str
    chain: tuple[str, ...]
    classification: Classification | None


@dataclass(frozen=True, slots=True)
class ModelRequestSent:
    """`model:request` (observer): one attempt is being sent to a provider.

    Attributes:
        request_id: the request.
        session_key: the session asking, if any.
        model: `<provider>/<model>` of this attempt.
        profile: the auth profile id (never the key).
        attempt: 1 for the first attempt of the request, then 2, 3, ...
        prefill: characters of partial answer sent as a prefill (0: none).
    """

    request_id: str
    session_key: str | None
    model: str
    profile: str | None
    attempt: int
    prefill: int


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """`model:response` (observer): a request was answered.

    Attributes:
        request_id: the request.
        session_key: the session asking, if any.
        result: the served model, the attempt trail and the usage.
    """

    request_id: str
    session_key: str | None
    result: ModelResult


@dataclass(frozen=True, slots=True)
class ModelFailover:
    """`model:failover` (interceptor): a request is moving to another model.

    Return `Veto(reason)` to stop and surface the error, or a copy with another
    `to_model` to redirect.

    Attributes:
        request_id: the request.
        session_key: the session asking, if any.
        from_model: the model that failed.
        reason: its error class.
        detail: what happened.
        to_model: the next model (None: the chain is exhausted).
        attempts: the attempt trail so far.
    """

    request_id: str
    session_key: str | None
    from_model: str
    reason: str
    detail: str
    to_model: str | None
    attempts: tuple[Attempt, ...]


MODEL_SELECT: Final = HookEvent("model:select", ModelSelect)
MODEL_REQUEST: Final = HookEvent("model:request", ModelRequestSent)
MODEL_RESPONSE: Final = HookEvent("model:response", ModelResponse)
MODEL_FAILOVER: Final = HookEvent("model:failover", ModelFailover)


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """`session:created` (observer): a session key got its first transcript.

    Attributes:
        key: the session key.
        session_id: its transcript's id.
        channel: the channel of the first message, if known.
    """

    key: str
    session_id: str
    channel: str | None


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """`session:updated` (observer): a turn was answered and persisted.

    Attributes:
        key: the session key.
        session_id: its transcript's id.
        turns: turns answered so far.
        model: the model that answered this turn.
        run_id: the run of the turn.
    """

    key: str
    session_id: str
    turns: int
    model: str | None
    run_id: str


@dataclass(frozen=True, slots=True)
class SessionCompacted:
    """`session:compacted` (observer): older turns were summarized.

    Attributes:
        key: the session key.
        session_id: its transcript's id.
        through_turn: the summary covers the turns up to this one.
        kept_turns: turns kept verbatim after it.
        summary_chars: the summary's length.
    """

    key: str
    session_id: str
    through_turn: int
    kept_turns: int
    summary_chars: int


@dataclass(frozen=True, slots=True)
class SessionReset:
    """`session:reset` (observer): `/new` or `/reset` started a new transcript.

    Attributes:
        key: the session key.
        old_session_id: the transcript kept on disk.
        new_session_id: the new one.
    """

    key: str
    old_session_id: str
    new_session_id: str


SESSION_CREATED: Final = HookEvent("session:created", SessionCreated)
SESSION_UPDATED: Final = HookEvent("session:updated", SessionUpdated)
SESSION_COMPACTED: Final = HookEvent("session:compacted", SessionCompacted)
SESSION_RESET: Final = HookEvent("session:reset", SessionReset)


@dataclass(frozen=True, slots=True)
class GatewayStart:
    """`gateway:start` (observer): the channels are listening.

    Attributes:
        channels: the channels that started (websocket, http, telegram).
        ws_url: the WebSocket gateway's address.
        http_url: the HTTP endpoint's address.
    """

    channels: tuple[str, ...]
    ws_url: str | None
    http_url: str | None


@dataclass(frozen=True, slots=True)
class GatewayStop:
    """`gateway:stop` (observer): the channels stopped taking new work.

    Attributes:
        reason: why (a signal, a request).
        in_flight: runs still going at that moment.
    """

    reason: str
    in_flight: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """`message:received` (observer): a user's message reached callboard.

    Attributes:
        channel: websocket, http or telegram.
        session_key: the session it goes to.
        run_id: the run that answers it.
        text: what the user wrote.
        sender: who sent it, as the channel knows them (a client id, a user id).
    """

    channel: str
    session_key: str
    run_id: str
    text: str
    sender: str | None


@dataclass(frozen=True, slots=True)
class MessageSending:
    """`message:sending` (interceptor): a reply is about to be sent.

    Replace `text` to rewrite it, or return `Veto(reason)` to cancel it. On
    streaming channels the pieces have already gone out: this is the complete
    text of the `final` event (a veto turns it into an error event).

    Attributes:
        channel: websocket, http or telegram.
        session_key: the session answering.
        run_id: the run.
        text: the reply.
        model: the model that wrote it (None for chat commands).
        attempts: every model attempt that led to it, failed ones first (the
            last one served it); more than one means a failover happened.
    """

    channel: str
    session_key: str
    run_id: str
    text: str
    model: str | None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageSent:
    """`message:sent` (observer): a reply went out.

    Attributes:
        channel: websocket, http or telegram.
        session_key: the session that answered.
        run_id: the run.
        text: what was sent.
        model: the model that wrote it (None for chat commands).
        attempts: every model attempt that led to it (see `MessageSending`).
    """

    channel: str
    session_key: str
    run_id: str
    text: str
    model: str | None
    attempts: tuple[Attempt, ...] = ()


GATEWAY_START: Final = HookEvent("gateway:start", GatewayStart)
GATEWAY_STOP: Final = HookEvent("gateway:stop", GatewayStop)
MESSAGE_RECEIVED: Final = HookEvent("message:received", MessageReceived)
MESSAGE_SENDING: Final = HookEvent("message:sending", MessageSending)
MESSAGE_SENT: Final = HookEvent("message:sent", MessageSent)


CATALOGUE: Final[tuple[HookEvent[Any], ...]] = (
    GATEWAY_START,
    GATEWAY_STOP,
    MESSAGE_RECEIVED,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    MODEL_SELECT,
    MODEL_REQUEST,
    MODEL_RESPONSE,
    MODEL_FAILOVER,
    SESSION_CREATED,
    SESSION_UPDATED,
    SESSION_COMPACTED,
    SESSION_RESET,
    ACTOR_RESTARTED,
    ACTOR_ESCALATED,
)
"""Every event callboard emits."""

INTERCEPTABLE: Final[frozenset[str]] = frozenset(
    e.name for e in (MODEL_SELECT, MODEL_FAILOVER, MESSAGE_SENDING)
)
"""The events whose interceptors run (the others are only observed)."""
