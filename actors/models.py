"""The messages of a model call: requests, stream events, results, attempts.

A caller (a session, the HTTP endpoint) sends `Generate` to the failover
supervisor with a channel for `StreamEvent`s: `Delta`s while text arrives, then
exactly one `Completed` or `Failed`. The failover supervisor sends `ProviderCall`
to provider actors, which answer on their own channel with `ProviderEvent`s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

import trio
from pydantic import ConfigDict, Field

from actors.errors import ErrorClass, ModelError
from runtime import Message

__all__ = [
    "AUTO_MODEL",
    "Attempt",
    "ChatMessage",
    "Classification",
    "Completed",
    "Delta",
    "Failed",
    "Generate",
    "ModelRequest",
    "ModelResult",
    "ProviderCall",
    "ProviderDelta",
    "ProviderDone",
    "ProviderEvent",
    "ProviderFailed",
    "StreamEvent",
    "Usage",
    "split_model",
]

AUTO_MODEL = "auto"
"""The model name that asks the task classifier to choose."""


def split_model(model: str) -> tuple[str, str]:
    """`"<provider>/<name>"` -> `(provider, name)`; the name may itself contain '/'."""
    provider, _, name = model.partition("/")
    return provider, name


class ChatMessage(Message):
    """One message of a conversation."""

    role: Literal["system", "user", "assistant"]
    content: str


class ModelRequest(Message):
    """What a caller wants answered, and which models it prefers.

    Override order of the model: `model` (unless `auto`), then `session_pin`,
    then `channel_pin`, then the config's default; `auto` (or a default of
    `auto`) asks the classifier for a tier.
    """

    messages: tuple[ChatMessage, ...]
    model: str | None = None
    fallbacks: tuple[str, ...] | None = None
    session_key: str | None = None
    session_pin: str | None = None
    channel: str | None = None
    channel_pin: str | None = None
    stream: bool = True
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex)


class Usage(Message):
    """Tokens of one served attempt."""

    input_tokens: int = 0
    output_tokens: int = 0


class Attempt(Message):
    """One entry of the attempt trail. `profile` is an auth profile id, never a key.

    `reason` is `ok`, an `ErrorClass` value, or why the route was skipped
    (`skipped: ...`).
    """

    model: str
    provider: str
    profile: str | None
    reason: str
    status: int | None = None
    duration_s: float = 0.0
    detail: str = ""


class Classification(Message):
    """The task classifier's verdict; `label` None means it abstained."""

    label: str | None
    reasons: tuple[str, ...] = ()


class ModelResult(Message):
    """What served a request, how it got there, and what it cost."""

    text: str
    provider: str
    model: str
    attempts: tuple[Attempt, ...]
    usage: Usage
    finish_reason: str | None = None
    source: str = "default"
    classification: Classification | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """More answer text for the caller.

    A slotted dataclass rather than a pydantic model: one is made per streamed
    piece, and nothing it carries needs validating again (see `ProviderDelta`).
    """

    text: str


class Completed(Message):
    """The answer is complete."""

    result: ModelResult


class Failed(Message):
    """The request failed; `partial` is what the caller already received."""

    kind: ErrorClass
    message: str
    attempts: tuple[Attempt, ...] = ()
    partial: str = ""
    retryable: bool = False


StreamEvent = Delta | Completed | Failed


class Generate(Message):
    """Ask the failover supervisor for an answer, streamed to `events`.

    The supervisor closes `events` after the `Completed` or `Failed`. The
    request runs inside `scope`: the caller aborts it with `scope.cancel()`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    request: ModelRequest
    events: trio.MemorySendChannel[StreamEvent]
    scope: trio.CancelScope = Field(default_factory=trio.CancelScope)


@dataclass(frozen=True, slots=True)
class ProviderDelta:
    """Answer text from a provider (validated where it was parsed, at the wire)."""

    text: str


class ProviderDone(Message):
    """The provider finished cleanly."""

    usage: Usage
    finish_reason: str | None = None


class ProviderFailed(Message):
    """The provider call failed; `error` is already classified."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    error: ModelError


ProviderEvent = ProviderDelta | ProviderDone | ProviderFailed


class ProviderCall(Message):
    """One attempt on one route: a provider, a model name, an auth profile.

    Attributes:
        model: the name forwarded to the provider unchanged.
        messages: the conversation.
        prefill: partial answer to continue, as a trailing assistant message.
        profile: which auth profile (key) to use; None for keyless providers.
        stream: stream the answer (SSE) or fetch it whole.
        events: where the provider sends its `ProviderEvent`s (it closes it).
        scope: the provider runs the call inside it; the caller cancels the
            call with `scope.cancel()`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    model: str
    messages: tuple[ChatMessage, ...]
    prefill: str | None = None
    profile: str | None = None
    stream: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    events: trio.MemorySendChannel[ProviderEvent]
    scope: trio.CancelScope = Field(default_factory=trio.CancelScope)
