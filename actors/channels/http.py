"""The HTTP endpoint: probes, metrics, and an OpenAI-compatible chat API.

Routes::

    GET  /healthz               200 {"ok": true} while the process serves
    GET  /readyz                200 {"ready": true}; 503 {"ready": false, "reason": "draining"}
    GET  /metrics               Prometheus text format 0.0.4 (see `actors.channels.metrics`)
    GET  /v1/models             the OpenAI model list: configured models, aliases, "auto"
    GET  /v1/models/{id}        one of them
    POST /v1/chat/completions   OpenAI Chat Completions, streamed (SSE) or whole

A plain ASGI 3 application served by hypercorn's trio worker in the child's own
task: `task_status.started()` is called once the socket listens, the child's
stop request is hypercorn's shutdown trigger, and connections still open then
get the channels supervisor's stop budget (less a margin) to finish.

**Auth.** When the variable named by `[gateway] token_env` is set, `/v1/*` and
`/metrics` require `Authorization: Bearer <token>` (401 otherwise). A bind
that is not loopback without a token refuses to start.

**Completions.** The body is validated strictly (400 naming the field, in
OpenAI's error shape); fields this endpoint does not use are ignored. `model`
is `<provider>/<model>`, an alias of `[models.aliases]`, `auto` (the task
classifier), or absent for the configured default; `fallbacks` (a list of
models, as LiteLLM accepts it) replaces the model's chain. Each request is
stateless (no session), tracked in flight, announced with `message:received`,
served through the failover supervisor, and passed through `message:sending`
(an interceptor may rewrite a whole answer or cancel it) and `message:sent`.

Response headers: `x-callboard-request-id` always; on a whole answer (and on
its errors) `x-callboard-model: <provider>/<model>` of the serving model and
`x-callboard-attempts: <model>:<reason>,...` (every attempt in order; reasons
are `ok`, an error class, or `skipped: ...`; percent-encoded where a character
is not plain ASCII or is a comma). The JSON body of a whole answer also
carries the same as `"callboard": {"model": ..., "attempts": [...]}`, each
attempt `{model, provider, profile, reason, status, duration_s}` (`profile` is
an auth profile id, never a key).

**Streams.** Headers go out at once, so the serving model is not known then:
each chunk's `model` is the requested one until the end. The chunk carrying
`finish_reason` has the served model and the trailer `"callboard": {"model":
..., "attempts": [...]}`; then, with `stream_options.include_usage`, a usage
chunk (`choices: []`); then `data: [DONE]`. A stream that fails (before or
after content) ends with one error event `data: {"error": {...}, "callboard":
{...}}` and **no** `[DONE]`: a cut answer never looks complete. A veto of
`message:sending` on a stream is such an error event (the pieces already went
out, so a rewrite cannot apply). A client that disconnects aborts its request.

Errors map from the failure's class: rate_limit 429; overloaded and
server_error 503; timeout 504; network, stream_cut, auth, auth_permanent and
billing 502 (the daemon's upstream failed, not the client); context_overflow
400 `context_length_exceeded`; content_filter 400; model_not_found 404; format
400. While draining, new completions get 503 `shutting_down` with
`Retry-After`; an answer cut at the drain deadline gets 503 `shutdown`.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

import trio
from hypercorn.config import Config as ServerConfig
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from actors.channels.gateway import (
    CANCELLED_CODE,
    SHUTDOWN_CODE,
    SHUTTING_DOWN_CODE,
    Gateway,
    Run,
    client_token,
)
from actors.channels.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from actors.channels.metrics import MetricsSnapshot, render
from actors.config import Config, GatewayConfig
from actors.errors import ErrorClass, HttpStartError
from actors.events import (
    MESSAGE_RECEIVED,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    MessageReceived,
    MessageSending,
    MessageSent,
)
from actors.failover.client import FAILOVER_NAME, ModelsClient
from actors.failover.supervisor import FailoverStatus, GetFailoverStatus
from actors.models import (
    AUTO_MODEL,
    Attempt,
    ChatMessage,
    Completed,
    Delta,
    Failed,
    ModelRequest,
    ModelResult,
    split_model,
)
from runtime import (
    ActorRuntimeError,
    ChildContext,
    ChildSpec,
    HookVetoed,
    ShuttingDown,
)

__all__ = [
    "HTTP_NAME",
    "ApiError",
    "ChatRequest",
    "HttpApp",
    "HttpStats",
    "attempts_header",
    "failure_error",
    "http_spec",
    "model_catalog",
    "parse_chat_request",
    "server_config",
]

log = logging.getLogger("callboard.http")

HTTP_NAME: Final = "http"

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""A larger request body is refused with 413."""

STATUS_TIMEOUT_S: Final = 2.0
"""How long /metrics waits for the failover supervisor's counters."""

DRAIN_RETRY_AFTER_S: Final = 5
"""`Retry-After` (seconds) of a completion refused or cut by a graceful stop."""

SHUTDOWN_MARGIN_S: Final = 1.0
"""hypercorn's graceful timeout is the child's stop budget less this, so that the
server ends its connections itself before the supervisor cancels it."""

SERVER_LOGGER: Final = "callboard.http.server"
"""hypercorn's own messages; at WARNING unless the logging config sets its level."""

OWNER: Final = "callboard"
"""`owned_by` of the models that are not a provider's (`auto`)."""

Role = Literal["system", "user", "assistant"]

_ROLES: Final[Mapping[str, Role]] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system role
    "user": "user",
    "assistant": "assistant",
}
_FINISH: Final[Mapping[str, str]] = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
}
_FAILURES: Final[Mapping[ErrorClass, tuple[int, str]]] = {
    ErrorClass.RATE_LIMIT: (429, "rate_limit_exceeded"),
    ErrorClass.OVERLOADED: (503, "overloaded"),
    ErrorClass.SERVER_ERROR: (503, "server_error"),
    ErrorClass.TIMEOUT: (504, "timeout"),
    ErrorClass.NETWORK: (502, "network"),
    ErrorClass.STREAM_CUT: (502, "stream_cut"),
    ErrorClass.AUTH: (502, "auth"),
    ErrorClass.AUTH_PERMANENT: (502, "auth_permanent"),
    ErrorClass.BILLING: (502, "billing"),
    ErrorClass.CONTEXT_OVERFLOW: (400, "context_length_exceeded"),
    ErrorClass.CONTENT_FILTER: (400, "content_filter"),
    ErrorClass.MODEL_NOT_FOUND: (404, "model_not_found"),
    ErrorClass.FORMAT: (400, "format"),
}
"""Status and error code of a failed completion, by the failure's class."""

_HEADER_SAFE: Final = "/:@._-+()=;~ "
"""Characters left as they are in `x-callboard-attempts` (a comma separates entries)."""

Headers = Sequence[tuple[str, str]]


# -- errors in OpenAI's shape --------------------------------------------------------------


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


class ApiError(Exception):
    """An error answer: `{"error": {"message", "type", "param", "code"}}` with a status.

    Args:
        status: the HTTP status.
        message: what went wrong, naming the field or the value.
        code: a machine-readable code (`invalid_value`, `model_not_found`, ...).
        param: the request field at fault, as a path (`messages[0].role`).
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Headers = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = tuple(headers)

    def payload(self) -> dict[str, Any]:
        """The JSON body."""
        return {
            "error": {
                "message": self.message,
                "type": _error_type(self.status),
                "param": self.param,
                "code": self.code,
            }
        }


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _retry_later(message: str, code: str) -> ApiError:
    return ApiError(503, message, code=code, headers=(("retry-after", str(DRAIN_RETRY_AFTER_S)),))


def failure_error(failed: Failed) -> ApiError:
    """The error answer of a failed model request (status from its class)."""
    status, code = _FAILURES.get(failed.kind, (502, failed.kind.value))
    param = "messages" if failed.kind is ErrorClass.CONTEXT_OVERFLOW else None
    return ApiError(status, failed.message, code=code, param=param)


def _header_text(text: str) -> str:
    """`text` as a header value: ASCII, percent-encoded beyond `_HEADER_SAFE` (commas too)."""
    return quote(text, safe=_HEADER_SAFE)


def attempts_header(attempts: Iterable[Attempt]) -> str:
    """`<model>:<reason>,...`: every attempt in order, ASCII, no stray commas."""
    return ",".join(f"{_header_text(a.model)}:{_header_text(a.reason)}" for a in attempts)


def _attempts_json(attempts: Iterable[Attempt]) -> list[dict[str, Any]]:
    return [
        {
            "model": a.model,
            "provider": a.provider,
            "profile": a.profile,
            "reason": a.reason,
            "status": a.status,
            "duration_s": a.duration_s,
        }
        for a in attempts
    ]


def _trailer(model: str | None, attempts: Iterable[Attempt]) -> dict[str, Any]:
    return {"model": model, "attempts": _attempts_json(attempts)}


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# -- the request body --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated `POST /v1/chat/completions` body.

    Attributes:
        messages: the conversation (`developer` folded into `system`).
        model: as requested (None: the configured default).
        fallbacks: the request's own chain after `model` (None: the configured one).
        stream: answer with server-sent events.
        include_usage: `stream_options.include_usage`.
        max_tokens: `max_completion_tokens`, else `max_tokens`.
        temperature: 0 to 2.
        user: the caller's end-user id, if given.
    """

    messages: tuple[ChatMessage, ...]
    model: str | None = None
    fallbacks: tuple[str, ...] | None = None
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    user: str | None = None

    @property
    def last_user_text(self) -> str:
        """The last user message ("" when there is none)."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _content(message: Mapping[str, Any], at: str, role: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":  # an assistant turn that only called tools
            return ""
        raise _invalid(f"{at}.content is required", f"{at}.content", "missing_required_parameter")
    if not isinstance(content, list):
        raise _invalid(
            f"{at}.content must be a string or an array of text parts, not {_kind(content)}",
            f"{at}.content",
            "invalid_type",
        )
    texts: list[str] = []
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        if not isinstance(part, dict):
            raise _invalid(f"{where} must be an object, not {_kind(part)}", where, "invalid_type")
        if part.get("type") != "text":
            raise _invalid(
                f"{where}.type must be 'text' (only text parts are supported), "
                f"got {part.get('type')!r}",
                f"{where}.type",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(
                f"{where}.text must be a string, not {_kind(text)}", f"{where}.text", "invalid_type"
            )
        texts.append(text)
    return "\n".join(texts)


def _messages(body: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
    raw = body.get("messages")
    if raw is None:
        raise _invalid("messages is required", "messages", "missing_required_parameter")
    if not isinstance(raw, list):
        raise _invalid(f"messages must be an array, not {_kind(raw)}", "messages", "invalid_type")
    if not raw:
        raise _invalid("messages must not be empty", "messages")
    messages: list[ChatMessage] = []
    for i, message in enumerate(raw):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(f"{at} must be an object, not {_kind(message)}", at, "invalid_type")
        role = message.get("role")
        if role is None:
            raise _invalid(f"{at}.role is required", f"{at}.role", "missing_required_parameter")
        if not isinstance(role, str) or role not in _ROLES:
            raise _invalid(
                f"{at}.role must be one of {', '.join(_ROLES)}; got {role!r}", f"{at}.role"
            )
        mapped = _ROLES[role]
        messages.append(ChatMessage(role=mapped, content=_content(message, at, mapped)))
    return tuple(messages)


def _known_model(name: str, config: Config) -> bool:
    if name == AUTO_MODEL or name in config.models.aliases:
        return True
    provider, model = split_model(name)
    return bool(provider and model and provider in config.providers)


def _unknown_model(name: str, config: Config) -> str:
    aliases = ", ".join(sorted(config.models.aliases)) or "none"
    providers = ", ".join(sorted(config.providers)) or "none"
    return (
        f"the model {name!r} does not exist: use '<provider>/<model>' with a declared "
        f"provider ({providers}), an alias ({aliases}), or 'auto'"
    )


def _model(body: Mapping[str, Any], config: Config) -> str | None:
    model = body.get("model")
    if model is None:
        return None
    if not isinstance(model, str):
        raise _invalid(f"model must be a string, not {_kind(model)}", "model", "invalid_type")
    if not model:
        return None
    if not _known_model(model, config):
        raise ApiError(404, _unknown_model(model, config), code="model_not_found", param="model")
    return model


def _fallbacks(body: Mapping[str, Any], config: Config) -> tuple[str, ...] | None:
    raw = body.get("fallbacks")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _invalid(
            f"fallbacks must be an array of models, not {_kind(raw)}", "fallbacks", "invalid_type"
        )
    models: list[str] = []
    for i, model in enumerate(raw):
        at = f"fallbacks[{i}]"
        if not isinstance(model, str):
            raise _invalid(f"{at} must be a string, not {_kind(model)}", at, "invalid_type")
        if model == AUTO_MODEL:
            raise _invalid(f"{at}: 'auto' cannot be a fallback; name a model", at)
        if not _known_model(model, config):
            raise _invalid(f"{at}: {_unknown_model(model, config)}", at, "model_not_found")
        models.append(model)
    return tuple(models)


def _optional_bool(body: Mapping[str, Any], key: str, param: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        name = param or key
        raise _invalid(f"{name} must be a boolean, not {_kind(value)}", name, "invalid_type")
    return value


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    chosen: int | None = None
    for key in ("max_tokens", "max_completion_tokens"):  # the newer name wins
        value = body.get(key)
        if value is None:
            continue
        if not _is_int(value):
            raise _invalid(f"{key} must be an integer, not {_kind(value)}", key, "invalid_type")
        if value < 1:
            raise _invalid(f"{key} must be at least 1, got {value}", key)
        chosen = value
    return chosen


def _temperature(body: Mapping[str, Any]) -> float | None:
    value = body.get("temperature")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(
            f"temperature must be a number, not {_kind(value)}", "temperature", "invalid_type"
        )
    if not 0 <= value <= 2:
        raise _invalid(f"temperature must be between 0 and 2, got {value}", "temperature")
    return float(value)


def parse_chat_request(body: object, config: Config) -> ChatRequest:
    """Validate a chat completions body; unknown fields are ignored.

    Raises:
        ApiError: 400 naming the field at fault; 404 for an unknown `model`.
    """
    if not isinstance(body, dict):
        raise _invalid(f"the request body must be a JSON object, not {_kind(body)}", None)
    messages = _messages(body)
    model = _model(body, config)
    stream = _optional_bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid(
            f"stream_options must be an object, not {_kind(options)}",
            "stream_options",
            "invalid_type",
        )
    include_usage = _optional_bool(options or {}, "include_usage", "stream_options.include_usage")
    n = body.get("n")
    if n is not None and not (_is_int(n) and n == 1):
        raise _invalid(f"n must be 1 (one choice per request), got {n!r}", "n")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid(f"user must be a string, not {_kind(user)}", "user", "invalid_type")
    return ChatRequest(
        messages=messages,
        model=model,
        fallbacks=_fallbacks(body, config),
        stream=stream,
        include_usage=include_usage,
        max_tokens=_max_tokens(body),
        temperature=_temperature(body),
        user=user or None,
    )


# -- /v1/models ------------------------------------------------------------------------------


def model_catalog(config: Config) -> list[dict[str, Any]]:
    """Every model the config names, then each alias, then `auto`, as OpenAI model objects."""
    models = config.models
    named: list[str] = [] if models.primary == AUTO_MODEL else [models.primary]
    named.extend(models.fallbacks)
    for head, chain in models.chains.items():
        named.extend((head, *chain))
    for chain in models.tiers.values():
        named.extend(chain)
    named.extend(models.aliases.values())
    named.extend(models.windows)
    owners = {name: split_model(name)[0] for name in named}
    for alias, target in models.aliases.items():
        owners.setdefault(alias, split_model(target)[0])
    owners.setdefault(AUTO_MODEL, OWNER)
    return [
        {"id": name, "object": "model", "created": 0, "owned_by": owner}
        for name, owner in owners.items()
    ]


# -- one exchange ----------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class _Exchange:
    """One HTTP request and its response, over ASGI.

    Tracks what was sent (for the metrics and for errors after the start) and
    whether the client went away.
    """

    def __init__(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self.method = scope["method"]
        self.path = scope["path"]
        self.headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        self._receive = receive
        self._send = send
        self.status: int | None = None
        self.sse = False
        self.finished = False
        self.disconnected = False

    async def read_body(self, limit: int) -> bytes:
        """The whole request body.

        Raises:
            ApiError: 413 when it is larger than `limit` bytes.
            _ClientGone: the client disconnected first.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise _ClientGone
            if message["type"] != "http.request":
                continue
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise ApiError(
                    413, f"the request body is larger than {limit} bytes", code="body_too_large"
                )
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def watch_disconnect(self, scope: trio.CancelScope) -> None:
        """Cancel `scope` if the client disconnects before the response is complete."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        self.disconnected = True
        if not self.finished:
            scope.cancel()

    async def start(self, status: int, content_type: str, headers: Headers = ()) -> None:
        """Send the status line and headers."""
        self.status = status
        encoded = [(b"content-type", content_type.encode())]
        encoded.extend((name.encode(), value.encode("latin-1")) for name, value in headers)
        await self._send({"type": "http.response.start", "status": status, "headers": encoded})

    async def body(self, data: bytes, *, more: bool) -> None:
        """Send body bytes; `more=False` completes the response."""
        if not more:
            self.finished = True
        if self.disconnected:
            return
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def whole(
        self, status: int, content_type: str, data: bytes, headers: Headers = ()
    ) -> None:
        """A whole response of known length."""
        await self.start(status, content_type, (*headers, ("content-length", str(len(data)))))
        await self.body(data, more=False)

    async def json(self, status: int, value: object, headers: Headers = ()) -> None:
        """A whole JSON response."""
        await self.whole(status, "application/json", _dumps(value), headers)

    async def event(self, value: object) -> None:
        """One server-sent event, `data: <json>` (the response must be an event stream)."""
        await self.body(b"data: " + _dumps(value) + b"\n\n", more=True)

    async def fail(self, error: ApiError, trailer: dict[str, Any] | None = None) -> None:
        """Answer with `error`: a JSON response, or an error event ending a started stream."""
        if self.finished or self.disconnected:
            return
        if self.status is None:
            await self.json(error.status, error.payload(), error.headers)
            return
        if self.sse:
            payload = error.payload()
            if trailer is not None:
                payload["callboard"] = trailer
            await self.event(payload)
        await self.body(b"", more=False)  # no [DONE]: the stream did not complete


# -- counting -------------------------------------------------------------------------------


class HttpStats:
    """HTTP requests answered, by route and status (kept across restarts of the child)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()

    def count(self, route: str, status: int | None) -> None:
        """One request of `route` answered with `status` (None: the client left first: 499)."""
        self.requests[(route, str(status if status is not None else 499))] += 1


# -- the application -------------------------------------------------------------------------


Handler = Callable[[_Exchange], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Route:
    label: str
    methods: frozenset[str]
    auth: bool
    handler: Handler


class HttpApp:
    """The ASGI application.

    Args:
        gateway: the channels' shared state.
        token: the client token; None when none is configured (no auth).
        stats: where requests are counted for /metrics.
    """

    def __init__(self, gateway: Gateway, *, token: str | None, stats: HttpStats) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.token = token
        self.stats = stats
        self._catalog = model_catalog(self.config)
        self._routes: dict[str, _Route] = {
            "/healthz": _Route("/healthz", frozenset({"GET", "HEAD"}), False, self._healthz),
            "/readyz": _Route("/readyz", frozenset({"GET", "HEAD"}), False, self._readyz),
            "/metrics": _Route("/metrics", frozenset({"GET"}), True, self._metrics),
            "/v1/models": _Route("/v1/models", frozenset({"GET"}), True, self._models),
            "/v1/chat/completions": _Route(
                "/v1/chat/completions", frozenset({"POST"}), True, self._chat
            ),
        }
        self._model_route = _Route("/v1/models/{id}", frozenset({"GET"}), True, self._model)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """ASGI 3 entry point: lifespan and HTTP; WebSocket upgrades are refused."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "not here"})

    def _route(self, path: str) -> _Route | None:
        route = self._routes.get(path)
        if route is None and path.startswith("/v1/models/"):
            return self._model_route
        return route

    async def _http(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        ex = _Exchange(scope, receive, send)
        route = self._route(ex.path)
        label = route.label if route is not None else "other"
        try:
            await self._dispatch(ex, route)
        except ApiError as exc:
            await ex.fail(exc)
        except _ClientGone:
            pass
        except Exception:  # the one boundary: log it, answer 500
            log.exception("http: %s %s failed", ex.method, ex.path)
            await ex.fail(ApiError(500, "internal error; see the daemon's log", code="internal"))
        finally:
            self.stats.count(label, ex.status if not ex.disconnected or ex.finished else None)
            log.debug("http: %s %s -> %s", ex.method, ex.path, ex.status)

    async def _dispatch(self, ex: _Exchange, route: _Route | None) -> None:
        if route is None:
            raise ApiError(404, f"no route {ex.path}", code="not_found")
        if ex.method not in route.methods:
            raise ApiError(
                405,
                f"{ex.method} is not allowed on {route.label}",
                code="method_not_allowed",
                headers=(("allow", ", ".join(sorted(route.methods))),),
            )
        if route.auth:
            self._authorize(ex)
        await route.handler(ex)

    def _authorize(self, ex: _Exchange) -> None:
        if self.token is None:
            return
        scheme, _, given = ex.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            raise ApiError(
                401,
                "a valid token is required: send 'Authorization: Bearer <token>'",
                code="invalid_api_key",
                headers=(("www-authenticate", "Bearer"),),
            )

    # -- probes and metrics --------------------------------------------------------------

    async def _healthz(self, ex: _Exchange) -> None:
        await ex.json(200, {"ok": True})

    async def _readyz(self, ex: _Exchange) -> None:
        if self.gateway.draining:
            await ex.json(503, {"ready": False, "reason": "draining"})
        else:
            await ex.json(200, {"ready": True})

    async def _metrics(self, ex: _Exchange) -> None:
        system = self.gateway.running_system
        snapshot = MetricsSnapshot(
            http_requests=dict(self.stats.requests),
            failover=await self._failover_status(),
            tree=system.snapshot(),
            in_flight=system.inflight.by_kind(),
            runs=dict(self.gateway.counters),
            dead_letters=system.dead_letters.counts(),
            hook_events=system.hooks.stats(),
            sessions_active=self.gateway.manager.active(),
        )
        await ex.whole(200, METRICS_CONTENT_TYPE, render(snapshot).encode())

    async def _failover_status(self) -> FailoverStatus | None:
        try:
            ref = self.gateway.running_system.registry.lookup(FAILOVER_NAME)
            status = await ref.ask(GetFailoverStatus(), STATUS_TIMEOUT_S)
        except ActorRuntimeError as exc:
            log.debug("http: /metrics without failover counters: %s", exc)
            return None
        return status if isinstance(status, FailoverStatus) else None

    # -- models ----------------------------------------------------------------------------

    async def _models(self, ex: _Exchange) -> None:
        await ex.json(200, {"object": "list", "data": self._catalog})

    async def _model(self, ex: _Exchange) -> None:
        wanted = ex.path.removeprefix("/v1/models/")
        for entry in self._catalog:
            if entry["id"] == wanted:
                await ex.json(200, entry)
                return
        raise ApiError(404, _unknown_model(wanted, self.config), code="model_not_found")

    # -- chat completions --------------------------------------------------------------------

    async def _chat(self, ex: _Exchange) -> None:
        raw = await ex.read_body(MAX_BODY_BYTES)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise _invalid(
                f"the request body is not valid JSON: {exc}", None, "invalid_json"
            ) from None
        chat = parse_chat_request(body, self.config)
        system = self.gateway.running_system
        with ExitStack() as stack:
            try:
                self.gateway.check_accepting()
                stack.enter_context(system.inflight.track(HTTP_NAME))
            except ShuttingDown:
                raise _retry_later(
                    "callboard is shutting down and takes no new requests; retry later",
                    SHUTTING_DOWN_CODE,
                ) from None
            await _ChatCall(self, ex, chat).run()


class _ChatCall:
    """One chat completion: the run, the model call, the answer (whole or streamed)."""

    def __init__(self, app: HttpApp, ex: _Exchange, chat: ChatRequest) -> None:
        self.gateway = app.gateway
        self.hooks = app.gateway.running_system.hooks
        self.client = ModelsClient(app.gateway.running_system.registry)
        self.ex = ex
        self.chat = chat
        self.request_id = uuid.uuid4().hex
        self.completion_id = f"chatcmpl-{self.request_id}"
        self.created = int(time.time())
        self.session_key = f"main:http:{chat.user or 'anonymous'}"
        self.requested = chat.model or app.config.models.primary
        self.sent = ""
        self.request = ModelRequest(
            messages=chat.messages,
            model=chat.model,
            fallbacks=chat.fallbacks,
            stream=chat.stream,
            max_tokens=chat.max_tokens,
            temperature=chat.temperature,
            channel=HTTP_NAME,
            channel_pin=app.config.channels.pins.get(HTTP_NAME),
            request_id=self.request_id,
        )

    async def run(self) -> None:
        """Serve the request as a gateway run (counted, cut at the drain deadline)."""
        run = Run(self.request_id, self.session_key, HTTP_NAME)
        self.gateway.runs[run.run_id] = run
        self.gateway.counters["runs"] += 1
        state = "error"
        try:
            self.hooks.notify(
                MESSAGE_RECEIVED,
                MessageReceived(
                    HTTP_NAME,
                    self.session_key,
                    run.run_id,
                    self.chat.last_user_text,
                    self.chat.user,
                ),
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.ex.watch_disconnect, run.scope)
                with run.scope:
                    state = await (self._stream() if self.chat.stream else self._whole())
                if run.scope.cancelled_caught:
                    state = await self._interrupted(run)
                nursery.cancel_scope.cancel()
        finally:
            self.gateway.runs.pop(run.run_id, None)
            self.gateway.counters[f"runs_{state}"] += 1

    async def _interrupted(self, run: Run) -> str:
        """The run's scope was cancelled: the client left, the drain cut it, or an abort."""
        if self.ex.disconnected:
            log.info("http: request %s aborted: the client disconnected", self.request_id)
            return "aborted"
        if run.cut:
            await self.ex.fail(
                _retry_later("the daemon is shutting down; the answer was cut", SHUTDOWN_CODE)
            )
            return "error"
        await self.ex.fail(ApiError(503, "the request was aborted", code="aborted"))
        return "aborted"

    async def _outcome(self) -> Completed | Failed:
        """Consume the model's events (streaming the deltas when asked)."""
        outcome: Completed | Failed | None = None
        async with self.client.stream(self.request) as events:
            async for event in events:
                if isinstance(event, Delta):
                    if event.text and self.chat.stream:
                        self.sent += event.text
                        await self.ex.event(self._chunk({"content": event.text}))
                else:
                    outcome = event
        assert outcome is not None, "a model stream always ends with Completed or Failed"
        return outcome

    async def _sending(self, result: ModelResult) -> str:
        """`message:sending` on the whole answer: its text (rewritten?).

        Raises:
            HookVetoed: an interceptor cancelled the reply.
        """
        payload = await self.hooks.emit(
            MESSAGE_SENDING,
            MessageSending(
                HTTP_NAME,
                self.session_key,
                self.request_id,
                result.text,
                result.model,
                result.attempts,
            ),
        )
        return payload.text

    def _sent(self, text: str, result: ModelResult) -> None:
        self.hooks.notify(
            MESSAGE_SENT,
            MessageSent(
                HTTP_NAME, self.session_key, self.request_id, text, result.model, result.attempts
            ),
        )

    @staticmethod
    def _usage(result: ModelResult) -> dict[str, int]:
        prompt, completion = result.usage.input_tokens, result.usage.output_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    # -- a whole answer ---------------------------------------------------------------------

    async def _whole(self) -> str:
        outcome = await self._outcome()
        headers: list[tuple[str, str]] = [("x-callboard-request-id", self.request_id)]
        if isinstance(outcome, Failed):
            headers.append(("x-callboard-attempts", attempts_header(outcome.attempts)))
            error = failure_error(outcome)
            payload = error.payload()
            payload["callboard"] = _trailer(None, outcome.attempts)
            await self.ex.json(error.status, payload, headers)
            return "error"
        result = outcome.result
        headers.append(("x-callboard-model", _header_text(result.model)))
        headers.append(("x-callboard-attempts", attempts_header(result.attempts)))
        try:
            text = await self._sending(result)
        except HookVetoed as exc:
            error = ApiError(403, f"the reply was cancelled: {exc.reason}", code=CANCELLED_CODE)
            await self.ex.json(error.status, error.payload(), headers)
            return "error"
        await self.ex.json(
            200,
            {
                "id": self.completion_id,
                "object": "chat.completion",
                "created": self.created,
                "model": result.model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": _finish_reason(result.finish_reason),
                    }
                ],
                "usage": self._usage(result),
                "callboard": _trailer(result.model, result.attempts),
            },
            headers,
        )
        self._sent(text, result)
        return "final"

    # -- a stream ---------------------------------------------------------------------------

    def _chunk(
        self,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model or self.requested,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.chat.include_usage:
            chunk["usage"] = None
        return chunk

    async def _stream(self) -> str:
        self.ex.sse = True
        await self.ex.start(
            200,
            "text/event-stream; charset=utf-8",
            (
                ("cache-control", "no-cache"),
                ("x-accel-buffering", "no"),
                ("x-callboard-request-id", self.request_id),
            ),
        )
        await self.ex.event(self._chunk({"role": "assistant", "content": ""}))
        outcome = await self._outcome()
        if isinstance(outcome, Failed):
            await self.ex.fail(failure_error(outcome), _trailer(None, outcome.attempts))
            return "error"
        result = outcome.result
        trailer = _trailer(result.model, result.attempts)
        try:
            await self._sending(result)  # the pieces went out: a rewrite cannot apply
        except HookVetoed as exc:
            error = ApiError(403, f"the reply was cancelled: {exc.reason}", code=CANCELLED_CODE)
            await self.ex.fail(error, trailer)
            return "error"
        final = self._chunk(
            {}, finish_reason=_finish_reason(result.finish_reason), model=result.model
        )
        final["callboard"] = trailer
        await self.ex.event(final)
        if self.chat.include_usage:
            await self.ex.event(
                {
                    "id": self.completion_id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": result.model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": self._usage(result),
                }
            )
        await self.ex.body(b"data: [DONE]\n\n", more=False)
        self._sent(self.sent, result)
        return "final"


def _finish_reason(reason: str | None) -> str:
    return _FINISH.get(reason or "stop", "stop")


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """ASGI lifespan: nothing to set up or tear down; acknowledge both."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- the child -------------------------------------------------------------------------------


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port`, for hypercorn to listen on (`fd://`).

    Bound here rather than by hypercorn, whose own bind leaks its socket when
    the address is taken; here a failed bind closes it.

    Raises:
        OSError: the address cannot be bound (in use, not on this machine).
    """
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def server_config(
    gateway: GatewayConfig, *, graceful_timeout_s: float, fd: int | None = None
) -> ServerConfig:
    """hypercorn's config: one plain-HTTP bind (`fd`, a bound socket, when given),
    no access log, our error logger."""
    config = ServerConfig()
    host = gateway.bind
    config.bind = [
        f"fd://{fd}"
        if fd is not None
        else f"[{host}]:{gateway.http_port}"
        if ":" in host
        else f"{host}:{gateway.http_port}"
    ]
    config.accesslog = None
    errors = logging.getLogger(SERVER_LOGGER)
    if errors.level == logging.NOTSET:
        errors.setLevel(logging.WARNING)  # not its "Running on ... (CTRL + C to quit)" line
    config.errorlog = errors
    config.graceful_timeout = graceful_timeout_s
    config.include_server_header = False
    return config


class _Listening:
    """hypercorn's `task_status`: once it listens, note the address and start the child."""

    def __init__(self, on_listening: Callable[[list[str]], None]) -> None:
        self.on_listening = on_listening
        self.listening = False

    def started(self, value: list[str] | None = None) -> None:
        self.listening = True
        self.on_listening(value or [])


def http_spec(gateway: Gateway, *, shutdown_s: float) -> ChildSpec:
    """The child spec of the HTTP endpoint.

    Args:
        gateway: the channels' shared state; `addresses["http"]` is set once listening.
        shutdown_s: the stop budget (the channels supervisor's); connections open
            at a stop get it, less `SHUTDOWN_MARGIN_S`, to finish.
    """
    stats = HttpStats()
    graceful_s = max(0.0, shutdown_s - SHUTDOWN_MARGIN_S) if math.isfinite(shutdown_s) else math.inf

    async def run(ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        gw = gateway.config.gateway
        app = HttpApp(gateway, token=client_token(gw, gateway.env), stats=stats)

        def listening(binds: list[str]) -> None:
            address = binds[0] if binds else f"http://{gw.bind}:{gw.http_port}"
            gateway.addresses[HTTP_NAME] = address
            log.debug("http: listening on %s", address)
            task_status.started()

        status = _Listening(listening)
        try:
            sock = bound_socket(gw.bind, gw.http_port)
        except OSError as exc:
            raise HttpStartError(
                f"http: cannot listen on {gw.bind}:{gw.http_port}: {exc.strerror or exc}"
            ) from exc
        # hypercorn adopts the descriptor (and closes it when it stops).
        config = server_config(gw, graceful_timeout_s=graceful_s, fd=sock.detach())
        try:
            await serve(
                app,
                config,
                shutdown_trigger=ctx.wait_stop_requested,
                task_status=status,
                mode="asgi",
            )
        finally:
            gateway.addresses.pop(HTTP_NAME, None)

    return ChildSpec(name=HTTP_NAME, start=run, shutdown_s=shutdown_s)
