"""The one boundary where provider failures become `ModelError`s.

Every HTTP provider sends what went wrong through these functions, and only
these: an HTTP status with its headers and error body, an error event inside a
stream that began with 200, or a transport exception (httpx, OSError, a trio
timeout). Each maps to exactly one `ErrorClass`:

================  =====================================================================
class             from
================  =====================================================================
rate_limit        429 (not quota); OpenAI `rate_limit_exceeded`; Anthropic `rate_limit_error`
billing           402; 429 `insufficient_quota`; Anthropic `billing_error`; "credit balance"
auth              401; Anthropic `authentication_error`
auth_permanent    403; Anthropic `permission_error`; OpenAI `account_deactivated`
overloaded        503, 529; Anthropic `overloaded_error`; "overloaded" in a 5xx or stream error
server_error      500, 502, 504, other 5xx, 409; Anthropic `api_error`; OpenAI `server_error`
timeout           408; httpx timeouts; our own deadline scopes
network           refused, reset, DNS, TLS and protocol errors before the response headers
stream_cut        a transport error after the headers; a malformed event; no terminator
context_overflow  `context_length_exceeded`, "prompt is too long", 413 / `request_too_large`
content_filter    `content_policy_violation`, `content_filter`, finish `content_filter`/`refusal`
model_not_found   404; `model_not_found`; Anthropic `not_found_error`
format            any other 4xx (a malformed request), including a refused prefill
================  =====================================================================

`retry-after` (seconds or an HTTP date), `retry-after-ms` and `x-should-retry`
are read from every error response.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, Final, Literal

import httpx
import trio

from actors.errors import ErrorClass, ModelError

__all__ = [
    "TRANSPORT_CLASSES",
    "Wire",
    "classify_http",
    "classify_stream_error",
    "classify_transport",
    "parse_retry_after",
]

Wire = Literal["openai", "anthropic"]

_MAX_DETAIL_CHARS: Final = 300

# Anthropic's error types (and the OpenAI ones that say the same thing).
_ERROR_TYPES: Final[Mapping[str, ErrorClass]] = {
    "rate_limit_error": ErrorClass.RATE_LIMIT,
    "rate_limit_exceeded": ErrorClass.RATE_LIMIT,
    "overloaded_error": ErrorClass.OVERLOADED,
    "api_error": ErrorClass.SERVER_ERROR,
    "server_error": ErrorClass.SERVER_ERROR,
    "authentication_error": ErrorClass.AUTH,
    "permission_error": ErrorClass.AUTH_PERMANENT,
    "account_deactivated": ErrorClass.AUTH_PERMANENT,
    "billing_error": ErrorClass.BILLING,
    "insufficient_quota": ErrorClass.BILLING,
    "billing_hard_limit_reached": ErrorClass.BILLING,
    "not_found_error": ErrorClass.MODEL_NOT_FOUND,
    "model_not_found": ErrorClass.MODEL_NOT_FOUND,
    "request_too_large": ErrorClass.CONTEXT_OVERFLOW,
    "context_length_exceeded": ErrorClass.CONTEXT_OVERFLOW,
    "content_policy_violation": ErrorClass.CONTENT_FILTER,
    "content_filter": ErrorClass.CONTENT_FILTER,
}

# Phrases in an error message that say more than a generic status does.
_PHRASES: Final[tuple[tuple[str, ErrorClass], ...]] = (
    ("prompt is too long", ErrorClass.CONTEXT_OVERFLOW),
    ("context length", ErrorClass.CONTEXT_OVERFLOW),
    ("context_length", ErrorClass.CONTEXT_OVERFLOW),
    ("maximum context", ErrorClass.CONTEXT_OVERFLOW),
    ("too many tokens", ErrorClass.CONTEXT_OVERFLOW),
    ("credit balance", ErrorClass.BILLING),
    ("insufficient_quota", ErrorClass.BILLING),
    ("exceeded your current quota", ErrorClass.BILLING),
    ("content filter", ErrorClass.CONTENT_FILTER),
    ("content policy", ErrorClass.CONTENT_FILTER),
    ("content management policy", ErrorClass.CONTENT_FILTER),
    ("overloaded", ErrorClass.OVERLOADED),
)

_PREFILL_PHRASES: Final = ("prefill", "last message must", "final message must", "must end with")

# Every concrete httpx transport error, by class: before and after the response started.
TRANSPORT_CLASSES: Final[Mapping[type[httpx.HTTPError], tuple[ErrorClass, ErrorClass]]] = {
    httpx.ConnectTimeout: (ErrorClass.TIMEOUT, ErrorClass.TIMEOUT),
    httpx.ReadTimeout: (ErrorClass.TIMEOUT, ErrorClass.TIMEOUT),
    httpx.WriteTimeout: (ErrorClass.TIMEOUT, ErrorClass.TIMEOUT),
    httpx.PoolTimeout: (ErrorClass.TIMEOUT, ErrorClass.TIMEOUT),
    httpx.ConnectError: (ErrorClass.NETWORK, ErrorClass.NETWORK),
    httpx.ReadError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.WriteError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.CloseError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.RemoteProtocolError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.LocalProtocolError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.ProxyError: (ErrorClass.NETWORK, ErrorClass.NETWORK),
    httpx.UnsupportedProtocol: (ErrorClass.NETWORK, ErrorClass.NETWORK),
    httpx.DecodingError: (ErrorClass.STREAM_CUT, ErrorClass.STREAM_CUT),
    httpx.TooManyRedirects: (ErrorClass.NETWORK, ErrorClass.NETWORK),
    httpx.HTTPStatusError: (ErrorClass.SERVER_ERROR, ErrorClass.SERVER_ERROR),
    # The abstract bases, for subclasses a future httpx may add:
    httpx.TimeoutException: (ErrorClass.TIMEOUT, ErrorClass.TIMEOUT),
    httpx.NetworkError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.ProtocolError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.TransportError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.RequestError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
    httpx.HTTPError: (ErrorClass.NETWORK, ErrorClass.STREAM_CUT),
}


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 1] + "…"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, else `retry-after` (seconds or an HTTP date), in seconds."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value is None:
        return None
    return value.strip().lower() == "true"


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(type, code, message) from an OpenAI or Anthropic error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return "", "", error
    if not isinstance(error, dict):
        return "", "", ""
    kind = error.get("type")
    code = error.get("code")
    message = error.get("message")
    return (
        kind if isinstance(kind, str) else "",
        code if isinstance(code, str) else "",
        message if isinstance(message, str) else "",
    )


def _by_fields(kind: str, code: str, message: str) -> ErrorClass | None:
    for key in (code, kind):
        if key in _ERROR_TYPES:
            return _ERROR_TYPES[key]
    lowered = message.lower()
    for phrase, cls in _PHRASES:
        if phrase in lowered:
            return cls
    return None


def _by_status(status: int) -> ErrorClass:
    if status == 429:
        return ErrorClass.RATE_LIMIT
    if status == 402:
        return ErrorClass.BILLING
    if status == 401:
        return ErrorClass.AUTH
    if status == 403:
        return ErrorClass.AUTH_PERMANENT
    if status == 404:
        return ErrorClass.MODEL_NOT_FOUND
    if status == 408:
        return ErrorClass.TIMEOUT
    if status == 413:
        return ErrorClass.CONTEXT_OVERFLOW
    if status == 409:
        return ErrorClass.SERVER_ERROR
    if status in (503, 529):
        return ErrorClass.OVERLOADED
    if status >= 500:
        return ErrorClass.SERVER_ERROR
    return ErrorClass.FORMAT


def classify_http(
    status: int, headers: Mapping[str, str], body: bytes, *, provider: str = ""
) -> ModelError:
    """The `ModelError` for an HTTP error response."""
    try:
        parsed: Any = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    kind, code, message = _error_fields(parsed)
    if not message:
        message = body.decode("utf-8", errors="replace") if body else f"HTTP {status}"
    by_fields = _by_fields(kind, code, message)
    lowered = message.lower()
    cls = _by_status(status)
    if status >= 500:
        # A 5xx stays a route fault whatever its text; "overloaded" refines it.
        if by_fields is ErrorClass.OVERLOADED or "overloaded" in lowered:
            cls = ErrorClass.OVERLOADED
    elif by_fields is not None:
        cls = by_fields  # a specific error type or phrase beats a generic 4xx
    prefill = cls is ErrorClass.FORMAT and (
        code == "prefill_unsupported" or any(p in lowered for p in _PREFILL_PHRASES)
    )
    label = code or kind
    detail = f"{provider + ': ' if provider else ''}{_clip(message)}" + (
        f" [{label}]" if label else ""
    )
    return ModelError(
        cls,
        detail,
        status=status,
        retry_after_s=parse_retry_after(headers),
        should_retry=_should_retry(headers),
        prefill_rejected=prefill,
    )


def classify_stream_error(body: Any, *, provider: str = "") -> ModelError:
    """The `ModelError` for an error event inside a stream that began with 200."""
    kind, code, message = _error_fields(body)
    cls = _by_fields(kind, code, message) or ErrorClass.SERVER_ERROR
    if cls is ErrorClass.SERVER_ERROR and "overloaded" in message.lower():
        cls = ErrorClass.OVERLOADED  # as for a 5xx response
    label = code or kind
    detail = f"{provider + ': ' if provider else ''}error event in the stream: {_clip(message)}"
    return ModelError(cls, detail + (f" [{label}]" if label else ""))


def classify_transport(
    exc: BaseException, *, response_started: bool, provider: str = ""
) -> ModelError:
    """The `ModelError` for a transport failure or a deadline.

    Args:
        exc: an httpx error, an OSError, or `trio.TooSlowError`.
        response_started: the status line and headers had arrived.
    """
    prefix = f"{provider}: " if provider else ""
    if isinstance(exc, trio.TooSlowError):
        return ModelError(ErrorClass.TIMEOUT, f"{prefix}deadline passed")
    if isinstance(exc, httpx.HTTPError):
        for cls in type(exc).__mro__:
            if cls in TRANSPORT_CLASSES:
                before, after = TRANSPORT_CLASSES[cls]
                kind = after if response_started else before
                what = type(exc).__name__
                return ModelError(kind, f"{prefix}{what}: {_clip(str(exc)) or 'no detail'}")
    if isinstance(exc, OSError):
        kind = ErrorClass.STREAM_CUT if response_started else ErrorClass.NETWORK
        return ModelError(kind, f"{prefix}{type(exc).__name__}: {_clip(str(exc))}")
    raise TypeError(f"not a transport failure: {type(exc).__name__}") from exc
