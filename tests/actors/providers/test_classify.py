"""The error taxonomy boundary: every status, error type and transport failure maps once."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from actors.errors import ErrorClass
from actors.providers.classify import (
    TRANSPORT_CLASSES,
    classify_http,
    classify_stream_error,
    classify_transport,
    parse_retry_after,
)


def openai_body(type_: str, code: str | None, message: str) -> bytes:
    return json.dumps(
        {"error": {"type": type_, "code": code, "message": message, "param": None}}
    ).encode()


def anthropic_body(type_: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode()


CASES = [
    (
        429,
        openai_body("requests", "rate_limit_exceeded", "Rate limit reached"),
        ErrorClass.RATE_LIMIT,
    ),
    (
        429,
        openai_body("insufficient_quota", "insufficient_quota", "You exceeded your current quota"),
        ErrorClass.BILLING,
    ),
    (429, anthropic_body("rate_limit_error", "Number of requests exceeded"), ErrorClass.RATE_LIMIT),
    (402, openai_body("billing", "billing_hard_limit_reached", "hard limit"), ErrorClass.BILLING),
    (402, anthropic_body("billing_error", "payment required"), ErrorClass.BILLING),
    (
        400,
        anthropic_body("invalid_request_error", "Your credit balance is too low"),
        ErrorClass.BILLING,
    ),
    (
        401,
        openai_body("invalid_request_error", None, "Incorrect API key provided"),
        ErrorClass.AUTH,
    ),
    (401, anthropic_body("authentication_error", "invalid x-api-key"), ErrorClass.AUTH),
    (403, anthropic_body("permission_error", "not allowed"), ErrorClass.AUTH_PERMANENT),
    (
        401,
        openai_body("invalid_request_error", "account_deactivated", "deactivated"),
        ErrorClass.AUTH_PERMANENT,
    ),
    (500, openai_body("server_error", None, "The server had an error"), ErrorClass.SERVER_ERROR),
    (500, anthropic_body("api_error", "Internal server error"), ErrorClass.SERVER_ERROR),
    (502, b"<html>bad gateway</html>", ErrorClass.SERVER_ERROR),
    (
        503,
        openai_body("server_error", None, "The engine is currently overloaded"),
        ErrorClass.OVERLOADED,
    ),
    (529, anthropic_body("overloaded_error", "Overloaded"), ErrorClass.OVERLOADED),
    (500, anthropic_body("overloaded_error", "Overloaded"), ErrorClass.OVERLOADED),
    (
        404,
        openai_body("invalid_request_error", "model_not_found", "The model does not exist"),
        ErrorClass.MODEL_NOT_FOUND,
    ),
    (404, anthropic_body("not_found_error", "model: claude-x"), ErrorClass.MODEL_NOT_FOUND),
    (
        400,
        openai_body(
            "invalid_request_error", "context_length_exceeded", "maximum context length is 8192"
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    (
        400,
        anthropic_body(
            "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"
        ),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    (
        413,
        anthropic_body("request_too_large", "Request exceeds the maximum size"),
        ErrorClass.CONTEXT_OVERFLOW,
    ),
    (
        400,
        openai_body("invalid_request_error", "content_policy_violation", "rejected"),
        ErrorClass.CONTENT_FILTER,
    ),
    (
        400,
        anthropic_body("invalid_request_error", "Output blocked by content filtering policy"),
        ErrorClass.CONTENT_FILTER,
    ),
    (
        400,
        openai_body("invalid_request_error", None, "messages: field required"),
        ErrorClass.FORMAT,
    ),
    (422, b"unprocessable", ErrorClass.FORMAT),
    (408, b"", ErrorClass.TIMEOUT),
    (409, b"", ErrorClass.SERVER_ERROR),
]


@pytest.mark.parametrize(("status", "body", "kind"), CASES)
def test_status_and_body_map_to_one_class(status: int, body: bytes, kind: ErrorClass) -> None:
    assert classify_http(status, {}, body).kind is kind


def test_every_error_class_is_reachable() -> None:
    reached = {kind for _, _, kind in CASES}
    reached |= {
        classify_transport(exc, response_started=started).kind
        for exc, started in [(httpx.ConnectError("x"), False), (httpx.ReadError("x"), True)]
    }
    assert reached == set(ErrorClass)


@pytest.mark.parametrize("status", range(400, 600))
def test_every_error_status_maps_somewhere(status: int) -> None:
    assert isinstance(classify_http(status, {}, b"").kind, ErrorClass)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def test_every_httpx_error_has_its_own_mapping() -> None:
    missing = {cls for cls in _all_subclasses(httpx.HTTPError) if cls not in TRANSPORT_CLASSES}
    assert missing == set(), (
        f"httpx errors without a mapping: {sorted(c.__name__ for c in missing)}"
    )


@pytest.mark.parametrize(
    ("exc", "started", "kind"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), False, ErrorClass.NETWORK),
        (httpx.ConnectTimeout("t"), False, ErrorClass.TIMEOUT),
        (httpx.ReadTimeout("t"), True, ErrorClass.TIMEOUT),
        (httpx.RemoteProtocolError("peer closed"), False, ErrorClass.NETWORK),
        (httpx.RemoteProtocolError("peer closed"), True, ErrorClass.STREAM_CUT),
        (httpx.ReadError("reset"), True, ErrorClass.STREAM_CUT),
        (ConnectionResetError(104, "reset"), False, ErrorClass.NETWORK),
        (ConnectionResetError(104, "reset"), True, ErrorClass.STREAM_CUT),
        (trio.TooSlowError(), False, ErrorClass.TIMEOUT),
    ],
)
def test_transport_failures(exc: BaseException, started: bool, kind: ErrorClass) -> None:
    error = classify_transport(exc, response_started=started, provider="p")
    assert error.kind is kind and error.detail.startswith("p: ")


def test_anything_else_is_not_a_transport_failure() -> None:
    with pytest.raises(TypeError, match="not a transport failure: ValueError"):
        classify_transport(ValueError("x"), response_started=False)


def test_retry_headers() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None
    error = classify_http(429, {"retry-after": "3", "x-should-retry": "false"}, b"")
    assert (error.retry_after_s, error.should_retry, error.status) == (3.0, False, 429)
    assert classify_http(500, {"x-should-retry": "true"}, b"").should_retry is True


def test_in_stream_errors() -> None:
    assert (
        classify_stream_error({"error": {"type": "server_error", "message": "boom"}}).kind
        is ErrorClass.SERVER_ERROR
    )
    assert (
        classify_stream_error(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        ).kind
        is ErrorClass.OVERLOADED
    )
    assert (
        classify_stream_error({"error": {"type": "rate_limit_error"}}).kind is ErrorClass.RATE_LIMIT
    )
    assert classify_stream_error({}).kind is ErrorClass.SERVER_ERROR


def test_a_refused_prefill_is_recognised() -> None:
    body = openai_body(
        "invalid_request_error", "prefill_unsupported", "the last message must be from the user"
    )
    error = classify_http(400, {}, body)
    assert error.kind is ErrorClass.FORMAT and error.prefill_rejected
    assert not classify_http(
        400, {}, openai_body("invalid_request_error", None, "bad")
    ).prefill_rejected


def test_details_never_grow_without_bound() -> None:
    error = classify_http(500, {}, b"x" * 100_000)
    assert len(error.detail) < 400
