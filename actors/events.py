"""The lifecycle hook catalogue: every event's name and typed payload.

Payloads are frozen dataclasses; an interceptor replaces one with
`dataclasses.replace(payload, field=...)`. The events a part emits are listed
with it here so that plugins have one place to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from actors.models import Attempt, Classification, ModelResult
from runtime import ACTOR_ESCALATED, ACTOR_RESTARTED, HookEvent

__all__ = [
    "ACTOR_ESCALATED",
    "ACTOR_RESTARTED",
    "MODEL_FAILOVER",
    "MODEL_REQUEST",
    "MODEL_RESPONSE",
    "MODEL_SELECT",
    "SESSION_COMPACTED",
    "SESSION_CREATED",
    "SESSION_RESET",
    "SESSION_UPDATED",
    "ModelFailover",
    "ModelRequestSent",
    "ModelResponse",
    "ModelSelect",
    "SessionCompacted",
    "SessionCreated",
    "SessionReset",
    "SessionUpdated",
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
