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
    "ModelFailover",
    "ModelRequestSent",
    "ModelResponse",
    "ModelSelect",
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
