"""A fake LLM provider: a real HTTP/1.1 server that speaks OpenAI and Anthropic and fails on cue.

`FakeProvider` listens on a TCP port (trio + h11, no framework) and answers

* `POST /v1/chat/completions` in the OpenAI Chat Completions format (key from
  `Authorization: Bearer <key>`), streaming `chat.completion.chunk` events
  ending in `data: [DONE]`, with a usage chunk when `stream_options.include_usage`;
* `POST /v1/messages` in the Anthropic Messages format (key from `x-api-key`),
  streaming `message_start`, `content_block_start`, `ping`, `content_block_delta`
  (`text_delta`), `content_block_stop`, `message_delta`, `message_stop`;
* `GET /v1/models`: the models requested so far, plus `fake-model`;
* `POST /_faults`: reconfigure (see `FakeConfig`); `GET /_stats`: counters.

The answer is `answer.format(prompt=<last user message>, model=<model>)`, split
into chunks of `chunk_words` words (the spaces stay, so the chunks join back to
the exact text) and streamed one SSE event per chunk, each preceded by a pause
of `chunk_delay_s` (on trio's clock). A non-streaming answer waits the same
total time, then returns the whole text. Usage counts words: input tokens are
the words of every message (and the Anthropic `system`), output tokens the
words of the chunks sent. A last message from the assistant is a prefill: the
answer continues it (if the answer starts with the prefill, only the rest is
sent), except on OpenAI while `reject_prefill_openai` is set, which answers 400
`prefill_unsupported`.

Each completion request first has its body checked (bad JSON or a missing or
mistyped field: 400 in that wire format, counted in the stats as a request and
under `invalid`, and no fault is drawn). Then it draws one step from a
`FaultPlan` (the `per_key` plan of its key, else the `per_model` plan of its
model, else the default plan, which alone carries the seeded `probabilities`)
and acts it out:

==================  =======================================  =====================================
fault               OpenAI (`/v1/chat/completions`)          Anthropic (`/v1/messages`)
==================  =======================================  =====================================
rate_limit          429 `requests` / `rate_limit_exceeded`   429 `rate_limit_error`
quota               429 `insufficient_quota` (type and code)  400 `invalid_request_error`
                                                             "Your credit balance is too low..."
billing             402 `invalid_request_error` /            402 `billing_error`
                    `billing_hard_limit_reached`
auth                401 `invalid_request_error`, code null   401 `authentication_error`
forbidden           403 `request_forbidden` /                403 `permission_error`
                    `unsupported_country_region_territory`
server_error        500 `server_error`                       500 `api_error`
overloaded          503 `server_error` "...overloaded..."    529 `overloaded_error`
unavailable         503 `server_error`                       503 `api_error`
not_found           404 `invalid_request_error` /            404 `not_found_error` "model: <name>"
                    `model_not_found`
context_overflow    400 `invalid_request_error` /            400 `invalid_request_error`
                    `context_length_exceeded`                "prompt is too long: ..."
content_filter      400 `invalid_request_error` /            400 `invalid_request_error`
                    `content_policy_violation`               "Output blocked by content filtering
                                                             policy"
format              400 `invalid_request_error` /            400 `invalid_request_error`
                    `missing_required_parameter`             "messages: Field required"
refuse              TCP RST on this connection; the listening socket closes for `for_s` seconds
                    (connects are refused, idle keep-alive connections are closed), then it
                    listens again on the same port
reset               the request is read, then the connection is aborted with a TCP RST
                    (SO_LINGER 0) before any response byte
hang                the request is read, then nothing: the connection stays open until the
                    client closes it or the server stops
slow_first_token    stream: headers and the preamble events at once, then `delay_s` of silence
                    before the first text chunk; non-stream: the whole response `delay_s` late
cut                 stream: the preamble and `after` text chunks, then the connection closes
                    with the chunked body unterminated; non-stream: `content-length` of the
                    whole body, half of it sent, then the connection closes
stall               stream: the preamble and `after` text chunks, then silence with the
                    connection open; non-stream: as `hang`
malformed           stream: after `after` text chunks, one event whose data is not JSON
                    (OpenAI `data: {"choices": [`, Anthropic a truncated `content_block_delta`);
                    the stream then goes on to its normal end; non-stream: 200 with a body
                    that is the first half of the JSON (framing intact, JSON invalid)
no_done             stream: every event but the last (no `data: [DONE]` / no `message_stop`),
                    chunked body terminated cleanly; non-stream: a normal answer
error_event         stream: 200, the preamble and `after` text chunks, then an in-stream
                    error (OpenAI `data: {"error": {..."server_error"...}}`, Anthropic
                    `event: error` `overloaded_error`), body terminated, connection closed
                    (announced by `connection: close`); non-stream: as `server_error` (500)
slow_tokens         stream: every text chunk preceded by `delay_s`; non-stream: the response
                    `delay_s` times the chunk count late
==================  =======================================  =====================================

`retry_after`, `retry_after_ms` and `should_retry` parameters become the headers
`retry-after`, `retry-after-ms` and `x-should-retry: true|false`. Error bodies
are OpenAI's `{"error": {"message", "type", "param", "code"}}` and Anthropic's
`{"type": "error", "error": {"type", "message"}, "request_id"}`.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import math
import re
import string
import struct
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum, auto
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final

import h11
import trio

from actors.errors import FaultSpecError
from actors.faults import Fault, FaultName, FaultPlan, parse_fault, parse_schedule

__all__ = ["DEFAULT_ANSWER", "FakeConfig", "FakeProvider", "run_fake_provider"]

_log = logging.getLogger(__name__)

DEFAULT_ANSWER: Final[str] = "Hello from the fake provider. You said: {prompt}"
"""The answer template; `{prompt}` is the last user message, `{model}` the requested model."""

DEFAULT_MODEL: Final = "fake-model"
"""Listed by `GET /v1/models` even before any request names a model."""

RECEIVE_BYTES: Final = 65_536
"""Most bytes read from a client at once."""

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""A request body larger than this is answered 413 and the connection closed."""

LISTEN_BACKLOG: Final = 128
"""Pending connections the listening socket queues."""

ACCEPT_RETRY_S: Final = 0.1
"""Pause before accepting again when the process is out of file descriptors."""

OPENAI_CONTEXT_TOKENS: Final = 128_000
ANTHROPIC_CONTEXT_TOKENS: Final = 200_000
OVERFLOW_TOKENS: Final = 250_000
"""The prompt size a `context_overflow` fault claims."""

STATUS_OVERLOADED: Final = 529
"""Anthropic's "overloaded" status, which `http.HTTPStatus` does not know."""

_NONE_LABEL: Final = "(none)"
"""The stats label of a request without a key or a readable model."""

_LINGER_ABORT: Final = struct.pack("ii", 1, 0)
"""SO_LINGER on with a 0 s timeout: closing the socket sends RST instead of FIN."""

_ACCEPT_RESOURCE_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)

_WORD_RE: Final = re.compile(r"\s*\S+")
_OPENAI_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ANTHROPIC_ROLES: Final = frozenset({"user", "assistant"})
_ANSWER_FIELDS: Final = frozenset({"prompt", "model"})

_Headers = list[tuple[str, str]]
_Path = tuple[str | int, ...]


# --------------------------------------------------------------------------- configuration


def _empty_probabilities() -> Mapping[str, float]:
    return MappingProxyType({})


def _empty_schedules() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class FakeConfig:
    """Everything `POST /_faults` can set; a body sets only the keys it names.

    Attributes:
        schedule: the default fault schedule (the `actors.faults` language).
        probabilities: fault spec -> chance per request, drawn on the default plan's `ok` steps.
        seed: seeds those draws.
        per_model: model -> schedule, for requests naming that model.
        per_key: API key -> schedule; wins over `per_model`.
        answer: the answer template (`{prompt}` and `{model}` only).
        chunk_words: words per streamed chunk (>= 1).
        chunk_delay_s: pause before each streamed chunk.
        reject_prefill_openai: answer an OpenAI assistant prefill with 400.
    """

    schedule: str = "ok"
    probabilities: Mapping[str, float] = field(default_factory=_empty_probabilities)
    seed: int | None = None
    per_model: Mapping[str, str] = field(default_factory=_empty_schedules)
    per_key: Mapping[str, str] = field(default_factory=_empty_schedules)
    answer: str = DEFAULT_ANSWER
    chunk_words: int = 1
    chunk_delay_s: float = 0.0
    reject_prefill_openai: bool = True


_CONFIG_FIELDS: Final = tuple(f.name for f in fields(FakeConfig))
_PLAN_FIELDS: Final = frozenset({"schedule", "probabilities", "seed"})


class _BadField(Exception):
    """A `/_faults` field was rejected; `error` is what `configure` raises."""

    def __init__(self, name: str, error: FaultSpecError | ValueError) -> None:
        super().__init__(f"{name}: {error}")
        self.field = name
        self.error = error


def _spec_error(name: str, exc: FaultSpecError, where: str | None = None) -> _BadField:
    """A schedule error, its problem prefixed with where it came from (default: the field)."""
    return _BadField(name, FaultSpecError(exc.spec, f"{where or name}: {exc.problem}"))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_schedule(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _BadField(name, ValueError(f"{name}: expected a string, got {value!r}"))
    try:
        parse_schedule(value)
    except FaultSpecError as exc:
        raise _spec_error(name, exc) from None
    return value


def _check_probabilities(name: str, value: object) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise _BadField(name, ValueError(f"{name}: expected an object, got {value!r}"))
    chances: dict[str, float] = {}
    for spec, chance in value.items():
        if not isinstance(spec, str) or not _is_number(chance):
            raise _BadField(
                name, ValueError(f"{name}: {spec!r}: expected a number, got {chance!r}")
            )
        if not 0 <= chance <= 1:
            raise _BadField(name, ValueError(f"{name}: {spec!r}: {chance!r} is not in [0, 1]"))
        try:
            parse_fault(spec)
        except FaultSpecError as exc:
            raise _spec_error(name, exc) from None
        chances[spec] = float(chance)
    if math.fsum(chances.values()) > 1:
        raise _BadField(name, ValueError(f"{name}: the chances add up to more than 1"))
    return MappingProxyType(chances)


def _check_seed(name: str, value: object) -> int | None:
    if value is not None and not _is_int(value):
        raise _BadField(name, ValueError(f"{name}: expected an integer or null, got {value!r}"))
    return value  # type: ignore[return-value]  # checked just above


def _check_schedules(name: str, value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _BadField(name, ValueError(f"{name}: expected an object, got {value!r}"))
    schedules: dict[str, str] = {}
    for who, schedule in value.items():
        if not isinstance(who, str) or not isinstance(schedule, str):
            problem = f"{name}: {who!r}: expected a schedule string, got {schedule!r}"
            raise _BadField(name, ValueError(problem))
        try:
            parse_schedule(schedule)
        except FaultSpecError as exc:
            raise _spec_error(name, exc, f"{name}[{who!r}]") from None
        schedules[who] = schedule
    return MappingProxyType(schedules)


def _answer_problem(template: str) -> str | None:
    """Why `template` cannot be an answer template, or None if it can."""
    try:
        for _, field_name, spec, _ in string.Formatter().parse(template):
            if field_name is not None and field_name not in _ANSWER_FIELDS:
                return f"unknown placeholder {{{field_name}}}"
            if spec and "{" in spec:
                return "nested placeholders are not supported"
        template.format(prompt="", model="")
    except (ValueError, IndexError, KeyError) as exc:
        return str(exc)
    return None


def _check_answer(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _BadField(name, ValueError(f"{name}: expected a string, got {value!r}"))
    problem = _answer_problem(value)
    if problem is not None:
        hint = "use {prompt} and {model}; double any other brace"
        raise _BadField(name, ValueError(f"{name}: {problem} ({hint})"))
    return value


def _check_chunk_words(name: str, value: object) -> int:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise _BadField(name, ValueError(f"{name}: expected a whole number >= 1, got {value!r}"))
    return value  # type: ignore[return-value]  # checked just above


def _check_delay(name: str, value: object) -> float:
    if not _is_number(value) or not 0 <= value < math.inf:  # type: ignore[operator]
        raise _BadField(name, ValueError(f"{name}: expected seconds >= 0, got {value!r}"))
    return float(value)  # type: ignore[arg-type]  # checked just above


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _BadField(name, ValueError(f"{name}: expected true or false, got {value!r}"))
    return value


_CHECKS: Final[Mapping[str, Callable[[str, object], object]]] = {
    "schedule": _check_schedule,
    "probabilities": _check_probabilities,
    "seed": _check_seed,
    "per_model": _check_schedules,
    "per_key": _check_schedules,
    "answer": _check_answer,
    "chunk_words": _check_chunk_words,
    "chunk_delay_s": _check_delay,
    "reject_prefill_openai": _check_bool,
}


def _merge(current: FakeConfig, body: object) -> FakeConfig:
    """`current` with the fields of `body` replaced, all checked first.

    Raises:
        _BadField: the first bad field; nothing is changed.
    """
    if not isinstance(body, Mapping):
        raise _BadField("body", ValueError(f"body: expected a JSON object, got {body!r}"))
    changes: dict[str, Any] = {}
    for name, value in body.items():
        check = _CHECKS.get(name) if isinstance(name, str) else None
        if check is None:
            known = ", ".join(_CONFIG_FIELDS)
            raise _BadField(str(name), ValueError(f"{name}: unknown field (known: {known})"))
        changes[name] = check(name, value)
    return replace(current, **changes)


# --------------------------------------------------------------------------- requests


class _Invalid(Enum):
    """Why a completion request's body was rejected."""

    JSON = auto()
    MISSING = auto()
    TYPE = auto()
    EMPTY = auto()
    VALUE = auto()
    PREFILL = auto()


class _BadRequest(Exception):
    """A completion request that cannot be served; rendered as a 400 in its wire format."""

    def __init__(self, kind: _Invalid, path: _Path = (), detail: str = "") -> None:
        super().__init__(f"{kind.name} {path} {detail}")
        self.kind = kind
        self.path = path
        self.detail = detail
        self.model: str | None = None


@dataclass(frozen=True, slots=True)
class _Message:
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class _Completion:
    """A checked completion request, plus the ids of its answer."""

    model: str
    stream: bool
    include_usage: bool
    prompt: str
    prefill: str | None
    input_tokens: int
    id: str = ""
    request_id: str = ""
    created: int = 0


def _word_count(text: str) -> int:
    return len(text.split())


def _split_words(text: str, per_chunk: int) -> list[str]:
    """Chunks of `per_chunk` words each, spaces kept: `"".join(chunks) == text`."""
    words: list[str] = _WORD_RE.findall(text)
    chunks = ["".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]
    tail = text[sum(map(len, words)) :]
    if tail:
        if chunks:
            chunks[-1] += tail
        else:
            chunks.append(tail)
    return chunks


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _BadRequest(_Invalid.JSON) from None
    if not isinstance(data, dict):
        raise _BadRequest(_Invalid.JSON)
    return data


def _required_model(data: Mapping[str, Any]) -> str:
    if "model" not in data:
        raise _BadRequest(_Invalid.MISSING, ("model",))
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise _BadRequest(_Invalid.TYPE, ("model",), "a non-empty string")
    return model


def _optional_bool(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise _BadRequest(_Invalid.TYPE, (name,), "a boolean")
    return bool(value)


def _max_tokens(data: Mapping[str, Any], *, required: bool) -> None:
    value = data.get("max_tokens")
    if value is None:
        if required:
            raise _BadRequest(_Invalid.MISSING, ("max_tokens",))
        return
    if not _is_int(value):
        raise _BadRequest(_Invalid.TYPE, ("max_tokens",), "an integer")
    if value < 1:
        raise _BadRequest(_Invalid.VALUE, ("max_tokens",), "expected a value >= 1")


def _content_text(content: Any, path: _Path, *, allow_null: bool) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        if allow_null:
            return ""
        raise _BadRequest(_Invalid.MISSING, path)
    if not isinstance(content, list):
        raise _BadRequest(_Invalid.TYPE, path, "a string or an array of content blocks")
    texts: list[str] = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _BadRequest(_Invalid.TYPE, (*path, index), "an object with a 'type'")
        if block["type"] == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise _BadRequest(_Invalid.TYPE, (*path, index, "text"), "a string")
            texts.append(text)
    return "\n".join(texts)


def _messages(raw: Any, roles: frozenset[str], *, allow_null: bool) -> list[_Message]:
    path: _Path = ("messages",)
    if raw is None:
        raise _BadRequest(_Invalid.MISSING, path)
    if not isinstance(raw, list):
        raise _BadRequest(_Invalid.TYPE, path, "an array")
    if not raw:
        raise _BadRequest(_Invalid.EMPTY, path)
    messages: list[_Message] = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _BadRequest(_Invalid.TYPE, (*path, index), "an object")
        role = message.get("role")
        if role is None:
            raise _BadRequest(_Invalid.MISSING, (*path, index, "role"))
        if role not in roles:
            expected = ", ".join(repr(r) for r in sorted(roles))
            raise _BadRequest(_Invalid.VALUE, (*path, index, "role"), f"expected one of {expected}")
        content = message.get("content")
        text = _content_text(content, (*path, index, "content"), allow_null=allow_null)
        messages.append(_Message(role, text))
    return messages


def _completion(
    model: str, messages: Sequence[_Message], extra_text: str, *, stream: bool, usage: bool
) -> _Completion:
    prompt = next((m.text for m in reversed(messages) if m.role == "user"), "")
    prefill = messages[-1].text if messages[-1].role == "assistant" else None
    words = _word_count(extra_text) + sum(_word_count(m.text) for m in messages)
    return _Completion(model, stream, usage, prompt, prefill, words)


# --------------------------------------------------------------------------- wire formats


@dataclass(frozen=True, slots=True)
class _ErrorSpec:
    """An error response: status, error type, message (may use `{model}`), code, param."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None


_OPENAI_ERRORS: Final[Mapping[FaultName, _ErrorSpec]] = {
    FaultName.RATE_LIMIT: _ErrorSpec(
        HTTPStatus.TOO_MANY_REQUESTS,
        "requests",
        "Rate limit reached for {model} on requests per min (RPM). Please try again later.",
        "rate_limit_exceeded",
    ),
    FaultName.QUOTA: _ErrorSpec(
        HTTPStatus.TOO_MANY_REQUESTS,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
    ),
    FaultName.BILLING: _ErrorSpec(
        HTTPStatus.PAYMENT_REQUIRED,
        "invalid_request_error",
        "Billing hard limit has been reached.",
        "billing_hard_limit_reached",
    ),
    FaultName.AUTH: _ErrorSpec(
        HTTPStatus.UNAUTHORIZED, "invalid_request_error", "Incorrect API key provided."
    ),
    FaultName.FORBIDDEN: _ErrorSpec(
        HTTPStatus.FORBIDDEN,
        "request_forbidden",
        "Country, region, or territory not supported.",
        "unsupported_country_region_territory",
    ),
    FaultName.SERVER_ERROR: _ErrorSpec(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    FaultName.OVERLOADED: _ErrorSpec(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "server_error",
        "The engine is currently overloaded, please try again later",
    ),
    FaultName.UNAVAILABLE: _ErrorSpec(
        HTTPStatus.SERVICE_UNAVAILABLE, "server_error", "Service Unavailable"
    ),
    FaultName.NOT_FOUND: _ErrorSpec(
        HTTPStatus.NOT_FOUND,
        "invalid_request_error",
        "The model `{model}` does not exist or you do not have access to it.",
        "model_not_found",
    ),
    FaultName.CONTEXT_OVERFLOW: _ErrorSpec(
        HTTPStatus.BAD_REQUEST,
        "invalid_request_error",
        f"This model's maximum context length is {OPENAI_CONTEXT_TOKENS} tokens. However, your "
        f"messages resulted in {OVERFLOW_TOKENS} tokens. Please reduce the length of the messages.",
        "context_length_exceeded",
        "messages",
    ),
    FaultName.CONTENT_FILTER: _ErrorSpec(
        HTTPStatus.BAD_REQUEST,
        "invalid_request_error",
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        "content_policy_violation",
    ),
    FaultName.FORMAT: _ErrorSpec(
        HTTPStatus.BAD_REQUEST,
        "invalid_request_error",
        "Missing required parameter: 'messages'.",
        "missing_required_parameter",
        "messages",
    ),
}

_ANTHROPIC_ERRORS: Final[Mapping[FaultName, _ErrorSpec]] = {
    FaultName.RATE_LIMIT: _ErrorSpec(
        HTTPStatus.TOO_MANY_REQUESTS,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization. Please try again later.",
    ),
    FaultName.QUOTA: _ErrorSpec(
        HTTPStatus.BAD_REQUEST,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    FaultName.BILLING: _ErrorSpec(
        HTTPStatus.PAYMENT_REQUIRED,
        "billing_error",
        "There is a problem with your account's billing. Please check Plans & Billing.",
    ),
    FaultName.AUTH: _ErrorSpec(
        HTTPStatus.UNAUTHORIZED, "authentication_error", "invalid x-api-key"
    ),
    FaultName.FORBIDDEN: _ErrorSpec(
        HTTPStatus.FORBIDDEN,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    FaultName.SERVER_ERROR: _ErrorSpec(
        HTTPStatus.INTERNAL_SERVER_ERROR, "api_error", "Internal server error"
    ),
    FaultName.OVERLOADED: _ErrorSpec(STATUS_OVERLOADED, "overloaded_error", "Overloaded"),
    FaultName.UNAVAILABLE: _ErrorSpec(
        HTTPStatus.SERVICE_UNAVAILABLE, "api_error", "Service Unavailable"
    ),
    FaultName.NOT_FOUND: _ErrorSpec(HTTPStatus.NOT_FOUND, "not_found_error", "model: {model}"),
    FaultName.CONTEXT_OVERFLOW: _ErrorSpec(
        HTTPStatus.BAD_REQUEST,
        "invalid_request_error",
        f"prompt is too long: {OVERFLOW_TOKENS} tokens > {ANTHROPIC_CONTEXT_TOKENS} maximum",
    ),
    FaultName.CONTENT_FILTER: _ErrorSpec(
        HTTPStatus.BAD_REQUEST,
        "invalid_request_error",
        "Output blocked by content filtering policy",
    ),
    FaultName.FORMAT: _ErrorSpec(
        HTTPStatus.BAD_REQUEST, "invalid_request_error", "messages: Field required"
    ),
}


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sse(data: object, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class _Wire(ABC):
    """One provider's wire format: request parsing, answers, stream events, errors."""

    path: str
    errors: Mapping[FaultName, _ErrorSpec]
    id_prefix: str

    @abstractmethod
    def api_key(self, headers: Mapping[str, str]) -> str:
        """The request's API key, or "" without one."""

    def parse(self, body: bytes, *, reject_prefill: bool) -> _Completion:
        """Check a request body.

        Raises:
            _BadRequest: it is not JSON, or a field is missing or wrong; `model` is
                set when the body names one.
        """
        data = _load_object(body)
        try:
            return self._parse(data, reject_prefill=reject_prefill)
        except _BadRequest as bad:
            model = data.get("model")
            bad.model = model if isinstance(model, str) and model else None
            raise

    @abstractmethod
    def _parse(self, data: Mapping[str, Any], *, reject_prefill: bool) -> _Completion:
        """Check the fields of a request body. Raises `_BadRequest`."""

    @abstractmethod
    def headers(self, request_id: str) -> _Headers:
        """Headers every response of this format carries."""

    @abstractmethod
    def error_body(self, spec: _ErrorSpec, model: str, request_id: str) -> dict[str, Any]:
        """The JSON body of an error response."""

    @abstractmethod
    def invalid_body(self, bad: _BadRequest, request_id: str) -> dict[str, Any]:
        """The JSON body of a 400 for a request that did not check."""

    @abstractmethod
    def message(self, c: _Completion, text: str, output_tokens: int) -> dict[str, Any]:
        """The whole non-streaming answer."""

    @abstractmethod
    def preamble(self, c: _Completion) -> bytes:
        """The events that open a stream, before any text."""

    @abstractmethod
    def delta(self, c: _Completion, text: str) -> bytes:
        """One text chunk's event."""

    @abstractmethod
    def finish(self, c: _Completion, output_tokens: int, *, terminate: bool) -> bytes:
        """The events that close a stream; `terminate=False` leaves out the very last one."""

    @abstractmethod
    def stream_error(self) -> bytes:
        """An error event inside a 200 stream."""

    @abstractmethod
    def malformed(self) -> bytes:
        """An event whose data is not valid JSON."""


class _OpenAIWire(_Wire):
    path = "/v1/chat/completions"
    errors = _OPENAI_ERRORS
    id_prefix = "chatcmpl-fake"

    def api_key(self, headers: Mapping[str, str]) -> str:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _parse(self, data: Mapping[str, Any], *, reject_prefill: bool) -> _Completion:
        model = _required_model(data)
        messages = _messages(data.get("messages"), _OPENAI_ROLES, allow_null=True)
        stream = _optional_bool(data, "stream")
        options = data.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise _BadRequest(_Invalid.TYPE, ("stream_options",), "an object")
        include_usage = _optional_bool(options or {}, "include_usage")
        _max_tokens(data, required=False)
        temperature = data.get("temperature")
        if temperature is not None and not _is_number(temperature):
            raise _BadRequest(_Invalid.TYPE, ("temperature",), "a number")
        if reject_prefill and messages[-1].role == "assistant":
            raise _BadRequest(_Invalid.PREFILL, ("messages",))
        return _completion(model, messages, "", stream=stream, usage=stream and include_usage)

    def headers(self, request_id: str) -> _Headers:
        return [("x-request-id", request_id)]

    def error_body(self, spec: _ErrorSpec, model: str, request_id: str) -> dict[str, Any]:
        message = spec.message.format(model=model)
        return {
            "error": {"message": message, "type": spec.type, "param": spec.param, "code": spec.code}
        }

    def invalid_body(self, bad: _BadRequest, request_id: str) -> dict[str, Any]:
        param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in bad.path)[1:] or None
        code: str | None
        match bad.kind:
            case _Invalid.JSON:
                message = (
                    "We could not parse the JSON body of your request. The API expects a JSON "
                    "object as the request body."
                )
                code = None
            case _Invalid.MISSING:
                message, code = (
                    f"Missing required parameter: '{param}'.",
                    "missing_required_parameter",
                )
            case _Invalid.TYPE:
                message, code = (
                    f"Invalid type for '{param}': expected {bad.detail}.",
                    "invalid_type",
                )
            case _Invalid.EMPTY:
                message = (
                    f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
                    "but got an empty array instead."
                )
                code = "empty_array"
            case _Invalid.VALUE:
                message, code = f"Invalid value for '{param}': {bad.detail}.", "invalid_value"
            case _Invalid.PREFILL:
                message = (
                    "assistant prefill is not supported: the last message must be from the user"
                )
                code = "prefill_unsupported"
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        return {"error": error}

    def _chunk(
        self, c: _Completion, delta: Mapping[str, Any], finish: str | None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {
            "id": c.id,
            "object": "chat.completion.chunk",
            "created": c.created,
            "model": c.model,
            "system_fingerprint": None,
            "choices": [choice],
        }
        if c.include_usage:
            chunk["usage"] = None
        return chunk

    def _usage(self, c: _Completion, output_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": c.input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": c.input_tokens + output_tokens,
        }

    def message(self, c: _Completion, text: str, output_tokens: int) -> dict[str, Any]:
        answer = {"role": "assistant", "content": text, "refusal": None}
        return {
            "id": c.id,
            "object": "chat.completion",
            "created": c.created,
            "model": c.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": answer, "logprobs": None, "finish_reason": "stop"}],
            "usage": self._usage(c, output_tokens),
        }

    def preamble(self, c: _Completion) -> bytes:
        return _sse(self._chunk(c, {"role": "assistant", "content": ""}, None))

    def delta(self, c: _Completion, text: str) -> bytes:
        return _sse(self._chunk(c, {"content": text}, None))

    def finish(self, c: _Completion, output_tokens: int, *, terminate: bool) -> bytes:
        frames = [_sse(self._chunk(c, {}, "stop"))]
        if c.include_usage:
            last = self._chunk(c, {}, None) | {
                "choices": [],
                "usage": self._usage(c, output_tokens),
            }
            frames.append(_sse(last))
        if terminate:
            frames.append(_sse("[DONE]"))
        return b"".join(frames)

    def stream_error(self) -> bytes:
        spec = _OPENAI_ERRORS[FaultName.OVERLOADED]
        return _sse(self.error_body(spec, "", ""))

    def malformed(self) -> bytes:
        return _sse('{"choices": [')


class _AnthropicWire(_Wire):
    path = "/v1/messages"
    errors = _ANTHROPIC_ERRORS
    id_prefix = "msg_fake"

    def api_key(self, headers: Mapping[str, str]) -> str:
        if "x-api-key" in headers:
            return headers["x-api-key"].strip()
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _parse(self, data: Mapping[str, Any], *, reject_prefill: bool) -> _Completion:
        model = _required_model(data)
        messages = _messages(data.get("messages"), _ANTHROPIC_ROLES, allow_null=False)
        _max_tokens(data, required=True)
        system = data.get("system")
        system_text = _content_text(system, ("system",), allow_null=True)
        stream = _optional_bool(data, "stream")
        return _completion(model, messages, system_text, stream=stream, usage=stream)

    def headers(self, request_id: str) -> _Headers:
        return [("request-id", request_id)]

    def _error(self, error_type: str, message: str, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
        if request_id:
            body["request_id"] = request_id
        return body

    def error_body(self, spec: _ErrorSpec, model: str, request_id: str) -> dict[str, Any]:
        return self._error(spec.type, spec.message.format(model=model), request_id)

    def invalid_body(self, bad: _BadRequest, request_id: str) -> dict[str, Any]:
        where = ".".join(str(p) for p in bad.path) or "body"
        match bad.kind:
            case _Invalid.JSON:
                message = "The request body is not valid JSON: expected a JSON object"
            case _Invalid.MISSING:
                message = f"{where}: Field required"
            case _Invalid.TYPE:
                message = f"{where}: Input should be {bad.detail}"
            case _Invalid.EMPTY:
                message = f"{where}: at least one message is required"
            case _Invalid.VALUE | _Invalid.PREFILL:
                message = f"{where}: {bad.detail}"
        return self._error("invalid_request_error", message, request_id)

    def message(self, c: _Completion, text: str, output_tokens: int) -> dict[str, Any]:
        return {
            "id": c.id,
            "type": "message",
            "role": "assistant",
            "model": c.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": c.input_tokens, "output_tokens": output_tokens},
        }

    def preamble(self, c: _Completion) -> bytes:
        # Like the real API, message_start reports a token or so of output already.
        start = self.message(c, "", 1) | {"content": [], "stop_reason": None}
        return b"".join(
            [
                _sse({"type": "message_start", "message": start}, "message_start"),
                _sse(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                    "content_block_start",
                ),
                _sse({"type": "ping"}, "ping"),
            ]
        )

    def delta(self, c: _Completion, text: str) -> bytes:
        event = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return _sse(event, "content_block_delta")

    def finish(self, c: _Completion, output_tokens: int, *, terminate: bool) -> bytes:
        frames = [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
                "message_delta",
            ),
        ]
        if terminate:
            frames.append(_sse({"type": "message_stop"}, "message_stop"))
        return b"".join(frames)

    def stream_error(self) -> bytes:
        return _sse(self._error("overloaded_error", "Overloaded", ""), "error")

    def malformed(self) -> bytes:
        return _sse(
            '{"type": "content_block_delta", "index": 0, "delta": {"type": "text_de',
            "content_block_delta",
        )


_OPENAI: Final = _OpenAIWire()
_ANTHROPIC: Final = _AnthropicWire()


# --------------------------------------------------------------------------- HTTP plumbing


def _plain_error(message: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-shaped error body, for answers outside either wire format."""
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


def _reason(status: int) -> bytes:
    if status == STATUS_OVERLOADED:
        return b"Overloaded"
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _fault_headers(fault: Fault) -> _Headers:
    headers: _Headers = []
    if (retry_after := fault.param("retry_after")) is not None:
        headers.append(("retry-after", _number(retry_after)))
    if (retry_after_ms := fault.param("retry_after_ms")) is not None:
        headers.append(("retry-after-ms", _number(retry_after_ms)))
    if (should_retry := fault.param("should_retry")) is not None:
        headers.append(("x-should-retry", "true" if should_retry else "false"))
    return headers


def _int_param(fault: Fault, key: str) -> int:
    return int(fault.param(key) or 0)


def _float_param(fault: Fault, key: str) -> float:
    return fault.param(key) or 0.0


class _TooLarge(Exception):
    """A request body over `MAX_BODY_BYTES`."""


class _Exchange:
    """One request on one connection, and the means to answer it."""

    def __init__(
        self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> None:
        self.stream = stream
        self.conn = conn
        self.request = request
        self.body = body
        self.headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers
        }

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)

    async def send_bytes(
        self,
        status: int,
        body: bytes,
        headers: Iterable[tuple[str, str]] = (),
        *,
        content_type: str = "application/json",
        content_length: int | None = None,
        complete: bool = True,
    ) -> None:
        """Send a whole response; `complete=False` stops before the end of the message."""
        length = len(body) if content_length is None else content_length
        all_headers = [("content-type", content_type), ("content-length", str(length)), *headers]
        await self._send(
            h11.Response(status_code=status, headers=all_headers, reason=_reason(status))
        )
        if body:
            await self._send(h11.Data(data=body))
        if complete:
            await self._send(h11.EndOfMessage())

    async def send_json(
        self, status: int, obj: object, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send a JSON response."""
        await self.send_bytes(status, _json_bytes(obj), headers)

    async def start_stream(self, headers: Iterable[tuple[str, str]]) -> None:
        """Send the headers of a 200 SSE stream (chunked)."""
        all_headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
            *headers,
        ]
        await self._send(h11.Response(status_code=HTTPStatus.OK, headers=all_headers, reason=b"OK"))

    async def send_data(self, data: bytes) -> None:
        """Send part of the body (one chunk of a chunked stream)."""
        await self._send(h11.Data(data=data))

    async def end(self) -> None:
        """End the response body (the terminating chunk of a stream)."""
        await self._send(h11.EndOfMessage())


async def _abort(stream: trio.SocketStream) -> None:
    """Close with a TCP RST rather than a FIN."""
    stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, _LINGER_ABORT)
    await stream.aclose()


async def _wait_for_close(stream: trio.SocketStream) -> None:
    """Say nothing until the client goes away (or we are cancelled)."""
    while await stream.receive_some(RECEIVE_BYTES):
        pass


class _Ending(Enum):
    """How a stream ends."""

    DONE = auto()  # normally
    NO_DONE = auto()  # without its last event
    CUT = auto()  # connection closed mid-body
    STALL = auto()  # silence, connection open
    ERROR = auto()  # an in-stream error event


@dataclass(frozen=True, slots=True)
class _Shape:
    """How to deliver a stream: delays, where to stop, where to break an event."""

    chunk_delay_s: float
    first_delay_s: float = 0.0
    stop_after: int | None = None
    malformed_after: int | None = None
    ending: _Ending = _Ending.DONE


def _shape(fault: Fault | None, chunk_delay_s: float) -> _Shape:
    if fault is None:
        return _Shape(chunk_delay_s)
    match fault.name:
        case FaultName.SLOW_FIRST_TOKEN:
            return _Shape(chunk_delay_s, first_delay_s=_float_param(fault, "delay_s"))
        case FaultName.SLOW_TOKENS:
            return _Shape(_float_param(fault, "delay_s"))
        case FaultName.CUT:
            return _Shape(chunk_delay_s, stop_after=_int_param(fault, "after"), ending=_Ending.CUT)
        case FaultName.STALL:
            return _Shape(
                chunk_delay_s, stop_after=_int_param(fault, "after"), ending=_Ending.STALL
            )
        case FaultName.ERROR_EVENT:
            return _Shape(
                chunk_delay_s, stop_after=_int_param(fault, "after"), ending=_Ending.ERROR
            )
        case FaultName.MALFORMED:
            return _Shape(chunk_delay_s, malformed_after=_int_param(fault, "after"))
        case FaultName.NO_DONE:
            return _Shape(chunk_delay_s, ending=_Ending.NO_DONE)
        case _:
            return _Shape(chunk_delay_s)


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------------- the server


class FakeProvider:
    """A fake OpenAI + Anthropic endpoint that injects faults; see the module docstring.

    Args:
        schedule: the default fault schedule.
        probabilities: fault spec -> chance per request on the default plan's `ok` steps.
        seed: seeds those draws.
        answer: the answer template (`{prompt}`, `{model}`).
        chunk_words: words per streamed chunk.
        chunk_delay_s: pause before each streamed chunk.
        reject_prefill_openai: answer an OpenAI assistant prefill with 400.

    Raises:
        FaultSpecError: a schedule or probability spec does not parse.
        ValueError: another argument is out of range.

    Attributes:
        port: the port it listens on, once `serve` has started (0 before).
    """

    def __init__(
        self,
        *,
        schedule: str = "ok",
        probabilities: Mapping[str, float] | None = None,
        seed: int | None = None,
        answer: str = DEFAULT_ANSWER,
        chunk_words: int = 1,
        chunk_delay_s: float = 0.0,
        reject_prefill_openai: bool = True,
    ) -> None:
        self.port = 0
        self._config = FakeConfig()
        self._plan = FaultPlan()
        self._model_plans: dict[str, FaultPlan] = {}
        self._key_plans: dict[str, FaultPlan] = {}
        self.configure(
            {
                "schedule": schedule,
                "probabilities": dict(probabilities or {}),
                "seed": seed,
                "answer": answer,
                "chunk_words": chunk_words,
                "chunk_delay_s": chunk_delay_s,
                "reject_prefill_openai": reject_prefill_openai,
            }
        )
        self._models_seen: set[str] = set()
        self._ids = itertools.count(1)
        self._listener: trio.SocketListener | None = None
        self._refused_until = -math.inf
        self._idle: set[trio.CancelScope] = set()
        self.reset_stats()

    @property
    def config(self) -> FakeConfig:
        """The current settings."""
        return self._config

    # ------------------------------------------------------------------ control

    def configure(self, body: Mapping[str, Any]) -> None:
        """Apply a `POST /_faults` body: each key present replaces that setting.

        A new `schedule`, `probabilities` or `seed` restarts the default plan;
        `per_model` / `per_key` replace all their plans, each from its first step.
        Nothing changes unless every key checks.

        Raises:
            FaultSpecError: a schedule or probability spec does not parse.
            ValueError: an unknown key, a wrong type or a value out of range.
        """
        try:
            self._apply(body)
        except _BadField as bad:
            raise bad.error from None

    def _apply(self, body: object) -> None:
        config = _merge(self._config, body)
        assert isinstance(body, Mapping)  # _merge checked
        if _PLAN_FIELDS & body.keys():
            self._plan = FaultPlan(config.schedule, config.probabilities, config.seed)
        if "per_model" in body:
            self._model_plans = {m: FaultPlan(s) for m, s in config.per_model.items()}
        if "per_key" in body:
            self._key_plans = {k: FaultPlan(s) for k, s in config.per_key.items()}
        self._config = config

    def stats(self) -> dict[str, Any]:
        """What `GET /_stats` returns: counts of completion requests and injected faults.

        `invalid` counts the requests answered 400 because their body did not check.
        """
        return {
            "requests": self._requests,
            "by_route": dict(self._by_route),
            "by_key": dict(self._by_key),
            "by_model": dict(self._by_model),
            "by_model_key": dict(self._by_model_key),
            "faults": dict(self._faults),
            "invalid": self._invalid,
        }

    def reset_stats(self) -> None:
        """Zero every counter of `stats`."""
        self._requests = 0
        self._invalid = 0
        self._by_route: Counter[str] = Counter()
        self._by_key: Counter[str] = Counter()
        self._by_model: Counter[str] = Counter()
        self._by_model_key: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def _count(self, route: str, key: str, model: str) -> None:
        self._requests += 1
        self._by_route[route] += 1
        self._by_key[key] += 1
        self._by_model[model] += 1
        self._by_model_key[f"{model}|{key}"] += 1

    def _plan_for(self, key: str, model: str) -> FaultPlan:
        plan = self._key_plans.get(key)
        if plan is None:
            plan = self._model_plans.get(model, self._plan)
        return plan

    # ------------------------------------------------------------------ listening

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on `host:port` (0: any free port) and serve until cancelled.

        Reports the actual port through `task_status.started`. Each connection
        runs in its own task; a client's protocol or network error ends only
        its own connection.
        """
        listener = await self._listen(host, port)
        self.port = listener.socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                while True:
                    await self._accept(listener, nursery)
                    # A `refuse` fault closed the listener: stay deaf, then listen again.
                    # A later `refuse` (on a connection still open) may push the deadline back.
                    while trio.current_time() < self._refused_until:  # noqa: ASYNC110
                        await trio.sleep_until(self._refused_until)
                    listener = await self._listen(host, self.port)
        finally:
            listener.socket.close()

    async def _listen(self, host: str, port: int) -> trio.SocketListener:
        infos = await trio.socket.getaddrinfo(
            host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = trio.socket.socket(family, kind, proto)
        try:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            await sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        return trio.SocketListener(sock)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections until the listener is closed."""
        self._listener = listener
        try:
            while True:
                try:
                    stream = await listener.accept()
                except trio.ClosedResourceError:
                    return
                except OSError as exc:
                    if exc.errno not in _ACCEPT_RESOURCE_ERRNOS:
                        raise
                    _log.warning("fake provider: accept failed (%s); retrying", exc)
                    await trio.sleep(ACCEPT_RETRY_S)
                    continue
                nursery.start_soon(self._connection, stream)
        finally:
            self._listener = None

    def _refuse(self, for_s: float) -> None:
        """Close the listener (and idle connections) for `for_s` seconds."""
        self._refused_until = max(self._refused_until, trio.current_time() + for_s)
        if self._listener is not None:
            self._listener.socket.close()
        for scope in self._idle:
            scope.cancel()

    # ------------------------------------------------------------------ connections

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                try:
                    await self._converse(conn, stream)
                except h11.RemoteProtocolError as exc:
                    await self._reject(conn, stream, exc.error_status_hint, str(exc))
                except _TooLarge:
                    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                    await self._reject(conn, stream, status, f"body over {MAX_BODY_BYTES} bytes")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            _log.debug("fake provider: connection ended: %r", exc)

    async def _reject(
        self, conn: h11.Connection, stream: trio.SocketStream, status: int, why: str
    ) -> None:
        """Answer a request that could not be read, if the protocol state still allows it."""
        _log.debug("fake provider: bad request: %s", why)
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = _json_bytes(_plain_error(why))
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        try:
            for event in (
                h11.Response(status_code=status, headers=headers),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                data = conn.send(event)
                if data:
                    await stream.send_all(data)
        except h11.LocalProtocolError as exc:
            _log.debug("fake provider: could not answer a bad request: %s", exc)

    async def _converse(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        """Serve requests on one connection until either side closes it."""
        while True:
            incoming = await self._receive(conn, stream)
            if incoming is None:
                return
            exchange = _Exchange(stream, conn, *incoming)
            keep_open = await self._route(exchange)
            if not keep_open or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _receive(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request, bytes] | None:
        """The next request and its body, or None when the connection is done."""
        request: h11.Request | None = None
        body = bytearray()
        received = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if received or request is not None:
                    data = await stream.receive_some(RECEIVE_BYTES)
                else:
                    idle = await self._receive_idle(stream)
                    if idle is None:
                        return None
                    data = idle
                received = True
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, bytes(body)
            else:  # ConnectionClosed, PAUSED
                return None

    async def _receive_idle(self, stream: trio.SocketStream) -> bytes | None:
        """Wait for a request to begin; None if a `refuse` fault closed the connection."""
        with trio.CancelScope() as scope:
            self._idle.add(scope)
            try:
                return await stream.receive_some(RECEIVE_BYTES)
            finally:
                self._idle.discard(scope)
        return None

    # ------------------------------------------------------------------ routes

    async def _route(self, ex: _Exchange) -> bool:
        """Answer one request; False to close the connection afterwards."""
        method = ex.request.method.decode("ascii", "replace")
        path = ex.request.target.decode("ascii", "replace").partition("?")[0]
        match method, path:
            case "POST", _OPENAI.path:
                return await self._complete(ex, _OPENAI)
            case "POST", _ANTHROPIC.path:
                return await self._complete(ex, _ANTHROPIC)
            case "GET", "/v1/models":
                models = sorted(self._models_seen | {DEFAULT_MODEL})
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake-provider"}
                    for m in models
                ]
                await ex.send_json(HTTPStatus.OK, {"object": "list", "data": data})
            case "POST", "/_faults":
                await self._post_faults(ex)
            case "GET", "/_stats":
                await ex.send_json(HTTPStatus.OK, self.stats())
            case _:
                error = _plain_error(f"no route for {method} {path}", "unknown_url")
                await ex.send_json(HTTPStatus.NOT_FOUND, error)
        return True

    async def _post_faults(self, ex: _Exchange) -> None:
        try:
            body = json.loads(ex.body)
        except (ValueError, RecursionError):
            body = None
            problem: tuple[str, str] | None = ("body", "body: not valid JSON")
        else:
            problem = None
        if problem is None:
            try:
                self._apply(body)
            except _BadField as bad:
                problem = (bad.field, str(bad.error))
        if problem is not None:
            name, message = problem
            _log.info("fake provider: rejected /_faults: %s", message)
            error = {"type": "invalid_request_error", "field": name, "message": message}
            await ex.send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": error})
            return
        _log.info("fake provider: reconfigured: %s", sorted(body))
        await ex.send_json(HTTPStatus.OK, {"ok": True})

    async def _complete(self, ex: _Exchange, wire: _Wire) -> bool:
        route = f"POST {wire.path}"
        key = wire.api_key(ex.headers) or _NONE_LABEL
        number = next(self._ids)
        request_id = f"req_fake{number:06d}"
        headers = wire.headers(request_id)
        try:
            parsed = wire.parse(ex.body, reject_prefill=self._config.reject_prefill_openai)
        except _BadRequest as bad:
            self._count(route, key, bad.model or _NONE_LABEL)
            self._invalid += 1
            await ex.send_json(HTTPStatus.BAD_REQUEST, wire.invalid_body(bad, request_id), headers)
            return True
        c = replace(
            parsed,
            id=f"{wire.id_prefix}{number:06d}",
            request_id=request_id,
            created=int(time.time()),
        )
        self._count(route, key, c.model)
        self._models_seen.add(c.model)
        fault = self._plan_for(key, c.model).next()
        if fault is not None:
            self._faults[fault.name.value] += 1
            _log.debug("fake provider: %s %s key=%s: %s", route, c.model, key, fault)
        return await self._act(ex, wire, c, fault)

    def _answer(self, c: _Completion) -> str:
        full = self._config.answer.format(prompt=c.prompt, model=c.model)
        if c.prefill is not None and full.startswith(c.prefill):
            return full[len(c.prefill) :]
        return full

    async def _act(self, ex: _Exchange, wire: _Wire, c: _Completion, fault: Fault | None) -> bool:
        """Answer a checked request, acting out `fault`; False to close the connection."""
        headers = wire.headers(c.request_id)
        name = fault.name if fault is not None else None
        if fault is not None and fault.name in wire.errors:
            spec = wire.errors[fault.name]
            body = wire.error_body(spec, c.model, c.request_id)
            await ex.send_json(spec.status, body, headers + _fault_headers(fault))
            return True
        if fault is not None and fault.name is FaultName.REFUSE:
            self._refuse(_float_param(fault, "for_s"))
            await _abort(ex.stream)
            return False
        if name is FaultName.RESET:
            await _abort(ex.stream)
            return False
        if name is FaultName.HANG or (name is FaultName.STALL and not c.stream):
            await _wait_for_close(ex.stream)
            return False
        if name is FaultName.ERROR_EVENT and not c.stream:
            spec = wire.errors[FaultName.SERVER_ERROR]
            await ex.send_json(spec.status, wire.error_body(spec, c.model, c.request_id), headers)
            return True
        chunks = _split_words(self._answer(c), self._config.chunk_words)
        if c.stream:
            return await self._stream(
                ex, wire, c, chunks, _shape(fault, self._config.chunk_delay_s)
            )
        return await self._whole(ex, wire, c, chunks, fault)

    async def _whole(
        self, ex: _Exchange, wire: _Wire, c: _Completion, chunks: Sequence[str], fault: Fault | None
    ) -> bool:
        """A non-streaming answer, after as long as streaming it would take."""
        name = fault.name if fault is not None else None
        delay_s = self._config.chunk_delay_s * len(chunks)
        if fault is not None and name is FaultName.SLOW_TOKENS:
            delay_s = _float_param(fault, "delay_s") * len(chunks)
        if fault is not None and name is FaultName.SLOW_FIRST_TOKEN:
            delay_s += _float_param(fault, "delay_s")
        if delay_s > 0:
            await trio.sleep(delay_s)
        text = "".join(chunks)
        body = _json_bytes(wire.message(c, text, _word_count(text)))
        headers = wire.headers(c.request_id)
        half = body[: len(body) // 2]
        if name is FaultName.CUT:
            await ex.send_bytes(
                HTTPStatus.OK, half, headers, content_length=len(body), complete=False
            )
            return False
        if name is FaultName.MALFORMED:
            await ex.send_bytes(HTTPStatus.OK, half, headers)
            return True
        await ex.send_bytes(HTTPStatus.OK, body, headers)
        return True

    async def _stream(
        self, ex: _Exchange, wire: _Wire, c: _Completion, chunks: Sequence[str], shape: _Shape
    ) -> bool:
        """A streamed answer, delivered (and perhaps broken) as `shape` says."""
        headers = wire.headers(c.request_id)
        if shape.ending is _Ending.ERROR:
            # Announce the close, so that no client reuses the connection we are about to drop.
            headers.append(("connection", "close"))
        await ex.start_stream(headers)
        await ex.send_data(wire.preamble(c))
        if shape.first_delay_s > 0:
            await trio.sleep(shape.first_delay_s)
        count = len(chunks) if shape.stop_after is None else min(shape.stop_after, len(chunks))
        sent_words = 0
        for index, chunk in enumerate(chunks[:count]):
            if index == shape.malformed_after:
                await ex.send_data(wire.malformed())
            if shape.chunk_delay_s > 0:
                await trio.sleep(shape.chunk_delay_s)
            await ex.send_data(wire.delta(c, chunk))
            sent_words += _word_count(chunk)
        if shape.malformed_after is not None and shape.malformed_after >= count:
            await ex.send_data(wire.malformed())
        match shape.ending:
            case _Ending.CUT:
                return False
            case _Ending.STALL:
                await _wait_for_close(ex.stream)
                return False
            case _Ending.ERROR:
                await ex.send_data(wire.stream_error())
                await ex.end()
                return False  # (h11 would close it anyway: we sent `connection: close`)
            case _Ending.NO_DONE:
                await ex.send_data(wire.finish(c, sent_words, terminate=False))
            case _Ending.DONE:
                await ex.send_data(wire.finish(c, sent_words, terminate=True))
        await ex.end()
        return True


async def run_fake_provider(host: str, port: int, *, schedule: str, seed: int | None) -> None:
    """Serve a `FakeProvider` on `host:port` until cancelled (`callboard fake-provider`).

    Logs `fake provider listening on http://HOST:PORT` once it listens.

    Raises:
        FaultSpecError: `schedule` does not parse.
        OSError: the address cannot be bound.
    """
    provider = FakeProvider(schedule=schedule, seed=seed)
    async with trio.open_nursery() as nursery:
        actual: int = await nursery.start(provider.serve, host, port)
        _log.info("fake provider listening on %s", _base_url(host, actual))
