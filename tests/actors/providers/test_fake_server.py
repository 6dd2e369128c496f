"""The fake provider: real HTTP on loopback, both wire formats, every fault."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors.errors import FaultSpecError
from actors.providers.fake_server import DEFAULT_ANSWER, FakeProvider, run_fake_provider
from tests.helpers import wait_until

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
ROUTES = [OPENAI, ANTHROPIC]
CLIENT_TIMEOUT_S = 5.0
ANSWER = "Hello from the fake provider. You said: hi there"
ANSWER_WORDS = ["Hello", " from", " the", " fake", " provider.", " You", " said:", " hi", " there"]


# --------------------------------------------------------------------------- fixtures & helpers


@pytest.fixture
def clock() -> MockClock:
    """Virtual time that jumps ahead once every task has been idle for 0.1 s of real time."""
    return MockClock(autojump_threshold=0.1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(provider.serve)
        assert port == provider.port > 0
        yield provider
        nursery.cancel_scope.cancel()


def _client(port: int, timeout_s: float = CLIENT_TIMEOUT_S) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout_s)


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(fake.port) as client:
        yield client


def payload(
    route: str, text: str = "hi there", *, stream: bool = False, model: str = "m", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }
    if route == ANTHROPIC:
        body["max_tokens"] = 100
    body.update(extra)
    return body


def auth(route: str, key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if route == OPENAI else {"x-api-key": key}


@dataclass
class Event:
    name: str | None
    data: str
    at: float

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Streamed:
    """What a streaming request received, with the virtual time of each event."""

    route: str
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: Any = None
    events: list[Event] = field(default_factory=list)
    opened_at: float = 0.0
    error: Exception | None = None
    timed_out: bool = False

    def objects(self) -> list[Any]:
        found = []
        for event in self.events:
            try:
                found.append(event.json())
            except ValueError:
                continue
        return found

    def texts(self) -> list[str]:
        texts: list[str] = []
        for obj in self.objects():
            if self.route == OPENAI:
                for choice in obj.get("choices") or []:
                    if choice["delta"].get("content"):
                        texts.append(choice["delta"]["content"])
            elif obj.get("type") == "content_block_delta":
                texts.append(obj["delta"]["text"])
        return texts

    def text_times(self) -> list[float]:
        times = []
        for event in self.events:
            try:
                obj = event.json()
            except ValueError:
                continue
            if (
                self.route == OPENAI
                and any(c["delta"].get("content") for c in obj.get("choices") or [])
            ) or (self.route == ANTHROPIC and obj.get("type") == "content_block_delta"):
                times.append(event.at)
        return times

    @property
    def terminated(self) -> bool:
        """The format's own end marker arrived: `[DONE]` / `message_stop`."""
        if self.route == OPENAI:
            return any(e.data == "[DONE]" for e in self.events)
        return any(e.name == "message_stop" for e in self.events)

    def undecodable(self) -> list[str]:
        bad = []
        for event in self.events:
            if event.data == "[DONE]":
                continue
            try:
                json.loads(event.data)
            except ValueError:
                bad.append(event.data)
        return bad


async def stream(
    client: httpx.AsyncClient,
    route: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    give_up_after_s: float = math.inf,
) -> Streamed:
    """POST a streaming request and collect its SSE events (and how it ended)."""
    out = Streamed(route)
    name: str | None = None
    data: list[str] = []
    request_body = body if body is not None else payload(route, stream=True)
    async with client.stream("POST", route, json=request_body, headers=headers) as response:
        out.status = response.status_code
        out.headers = response.headers
        out.opened_at = trio.current_time()
        if response.status_code != 200:
            await response.aread()
            out.body = response.json()
            return out
        with trio.move_on_after(give_up_after_s) as scope:
            try:
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        data.append(line.removeprefix("data: "))
                    elif not line and data:
                        out.events.append(Event(name, "\n".join(data), trio.current_time()))
                        name, data = None, []
            except httpx.RemoteProtocolError as exc:
                out.error = exc
        out.timed_out = scope.cancelled_caught
    return out


async def set_faults(client: httpx.AsyncClient, **body: Any) -> None:
    response = await client.post("/_faults", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}


# --------------------------------------------------------------------------- normal answers


async def test_openai_answer_without_streaming(client: httpx.AsyncClient) -> None:
    response = await client.post(OPENAI, json=payload(OPENAI), headers=auth(OPENAI, "k1"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 9, "total_tokens": 11}


@pytest.mark.parametrize("include_usage", [True, False])
async def test_openai_stream_sends_one_chunk_per_word_then_done(
    client: httpx.AsyncClient, include_usage: bool
) -> None:
    body = payload(OPENAI, stream=True, stream_options={"include_usage": include_usage})

    got = await stream(client, OPENAI, body)

    assert got.status == 200
    assert got.headers["content-type"].startswith("text/event-stream")
    assert got.headers["transfer-encoding"] == "chunked"
    assert got.error is None
    assert got.texts() == ANSWER_WORDS
    assert "".join(got.texts()) == ANSWER
    assert got.events[-1].data == "[DONE]"
    chunks = [e.json() for e in got.events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 2,
            "completion_tokens": 9,
            "total_tokens": 11,
        }
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks)


async def test_anthropic_answer_without_streaming(client: httpx.AsyncClient) -> None:
    body = payload(ANTHROPIC, system="be brief please")

    response = await client.post(ANTHROPIC, json=body, headers=auth(ANTHROPIC, "k1"))

    assert response.status_code == 200
    got = response.json()
    assert got["type"] == "message"
    assert got["role"] == "assistant"
    assert got["model"] == "m"
    assert got["content"] == [{"type": "text", "text": ANSWER}]
    assert got["stop_reason"] == "end_turn"
    assert got["usage"] == {"input_tokens": 5, "output_tokens": 9}  # system words count too


async def test_anthropic_stream_has_the_real_event_sequence(client: httpx.AsyncClient) -> None:
    got = await stream(client, ANTHROPIC)

    assert got.status == 200
    assert got.error is None
    names = [e.name for e in got.events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 9,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e.json()["type"] == e.name for e in got.events)
    assert got.texts() == ANSWER_WORDS
    start = got.events[0].json()["message"]
    assert start["usage"]["input_tokens"] == 2
    assert start["content"] == []
    delta = got.events[-2].json()
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {"output_tokens": 9}
    assert got.terminated


@pytest.mark.parametrize("route", ROUTES)
async def test_answer_template_chunking_and_content_blocks(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"answer": "{model}  says:\n {prompt} ", "chunk_words": 2})
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "last"}, {"type": "text", "text": "one"}],
        },
    ]

    got = await stream(client, route, payload(route, stream=True, messages=messages, model="mx"))

    assert "".join(got.texts()) == "mx  says:\n last\none "
    assert got.texts() == ["mx  says:", "\n last\none "]
    assert got.terminated


@pytest.mark.parametrize("route", ROUTES)
async def test_chunks_are_chunk_delay_apart_on_the_clock(
    clock: MockClock, fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"answer": "one two three", "chunk_delay_s": 2.0})

    got = await stream(client, route)

    times = got.text_times()
    assert got.texts() == ["one", " two", " three"]
    assert times[0] - got.opened_at >= 2.0
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([2.0, 2.0], abs=0.5)


# --------------------------------------------------------------------------- prefill


@pytest.mark.parametrize("streaming", [True, False])
async def test_anthropic_continues_an_assistant_prefill(
    client: httpx.AsyncClient, streaming: bool
) -> None:
    messages = [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "Hello from the"},
    ]
    body = payload(ANTHROPIC, stream=streaming, messages=messages)

    if streaming:
        text = "".join((await stream(client, ANTHROPIC, body)).texts())
    else:
        text = (await client.post(ANTHROPIC, json=body)).json()["content"][0]["text"]

    assert text == " fake provider. You said: hi there"


async def test_a_prefill_the_answer_does_not_start_with_gets_the_whole_answer(
    client: httpx.AsyncClient,
) -> None:
    messages = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "Sure:"}]

    response = await client.post(ANTHROPIC, json=payload(ANTHROPIC, messages=messages))

    assert response.json()["content"][0]["text"] == ANSWER


async def test_openai_rejects_a_prefill_unless_told_otherwise(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    messages = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "Hello"}]

    rejected = await client.post(OPENAI, json=payload(OPENAI, messages=messages))
    fake.configure({"reject_prefill_openai": False})
    accepted = await client.post(OPENAI, json=payload(OPENAI, messages=messages))

    assert rejected.status_code == 400
    assert rejected.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "prefill_unsupported",
            "message": "assistant prefill is not supported: the last message must be from the user",
            "param": "messages",
        }
    }
    assert accepted.status_code == 200
    assert accepted.json()["choices"][0]["message"]["content"] == ANSWER.removeprefix("Hello")
    assert fake.stats()["invalid"] == 1


# --------------------------------------------------------------------------- error faults

# fault spec, route, status, (OpenAI error type, code) or (Anthropic error type, message part)
ERROR_FAULTS = [
    ("rate_limit", OPENAI, 429, ("requests", "rate_limit_exceeded")),
    ("rate_limit", ANTHROPIC, 429, ("rate_limit_error", "rate limit")),
    ("quota", OPENAI, 429, ("insufficient_quota", "insufficient_quota")),
    ("quota", ANTHROPIC, 400, ("invalid_request_error", "credit balance is too low")),
    ("billing", OPENAI, 402, ("invalid_request_error", "billing_hard_limit_reached")),
    ("billing", ANTHROPIC, 402, ("billing_error", "billing")),
    ("auth", OPENAI, 401, ("invalid_request_error", None)),
    ("auth", ANTHROPIC, 401, ("authentication_error", "x-api-key")),
    ("forbidden", OPENAI, 403, ("request_forbidden", "unsupported_country_region_territory")),
    ("forbidden", ANTHROPIC, 403, ("permission_error", "permission")),
    ("server_error", OPENAI, 500, ("server_error", None)),
    ("server_error", ANTHROPIC, 500, ("api_error", "Internal server error")),
    ("overloaded", OPENAI, 503, ("server_error", None)),
    ("overloaded", ANTHROPIC, 529, ("overloaded_error", "Overloaded")),
    ("unavailable", OPENAI, 503, ("server_error", None)),
    ("unavailable", ANTHROPIC, 503, ("api_error", "Unavailable")),
    ("not_found", OPENAI, 404, ("invalid_request_error", "model_not_found")),
    ("not_found", ANTHROPIC, 404, ("not_found_error", "model: m")),
    ("context_overflow", OPENAI, 400, ("invalid_request_error", "context_length_exceeded")),
    (
        "context_overflow",
        ANTHROPIC,
        400,
        ("invalid_request_error", "prompt is too long: 250000 tokens > 200000"),
    ),
    ("content_filter", OPENAI, 400, ("invalid_request_error", "content_policy_violation")),
    ("content_filter", ANTHROPIC, 400, ("invalid_request_error", "content filtering policy")),
    ("format", OPENAI, 400, ("invalid_request_error", "missing_required_parameter")),
    ("format", ANTHROPIC, 400, ("invalid_request_error", "messages: Field required")),
]


@pytest.mark.parametrize(("fault", "route", "status", "expected"), ERROR_FAULTS)
async def test_error_faults_answer_in_the_wire_format(
    fake: FakeProvider,
    client: httpx.AsyncClient,
    fault: str,
    route: str,
    status: int,
    expected: tuple[str, str | None],
) -> None:
    fake.configure({"schedule": f"fail 1 with {fault}"})

    response = await client.post(route, json=payload(route))
    after = await client.post(route, json=payload(route))

    assert response.status_code == status
    body = response.json()
    if route == OPENAI:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["code"]) == expected
        assert error["message"]
        assert "x-request-id" in response.headers
    else:
        assert body["type"] == "error"
        assert body["error"]["type"] == expected[0]
        assert expected[1] is not None
        assert expected[1].lower() in body["error"]["message"].lower()
        assert body["request_id"] == response.headers["request-id"]
    assert "retry-after" not in response.headers
    assert "x-should-retry" not in response.headers
    assert after.status_code == 200
    assert fake.stats()["faults"] == {fault: 1}


async def test_auth_fault_on_openai_says_incorrect_key_with_a_null_code(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.configure({"schedule": "auth"})

    error = (await client.post(OPENAI, json=payload(OPENAI))).json()["error"]

    assert error["code"] is None
    assert error["message"].startswith("Incorrect API key provided")


async def test_overloaded_openai_says_the_engine_is_overloaded(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    fake.configure({"schedule": "overloaded"})

    error = (await client.post(OPENAI, json=payload(OPENAI))).json()["error"]

    assert error["message"] == "The engine is currently overloaded, please try again later"


@pytest.mark.parametrize("route", ROUTES)
async def test_an_error_fault_on_a_streaming_request_is_a_plain_json_error(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "rate_limit retry_after=1"})

    got = await stream(client, route)

    assert got.status == 429
    assert got.headers["content-type"] == "application/json"
    assert got.headers["retry-after"] == "1"
    assert got.body is not None
    assert got.events == []


@pytest.mark.parametrize(
    ("spec", "route", "status", "headers"),
    [
        (
            "rate_limit retry_after=2 retry_after_ms=1500 should_retry=false",
            OPENAI,
            429,
            {"retry-after": "2", "retry-after-ms": "1500", "x-should-retry": "false"},
        ),
        ("rate_limit retry_after=0.5", ANTHROPIC, 429, {"retry-after": "0.5"}),
        ("rate_limit retry_after_ms=250", ANTHROPIC, 429, {"retry-after-ms": "250"}),
        ("server_error should_retry=true", OPENAI, 500, {"x-should-retry": "true"}),
        ("server_error should_retry=0", ANTHROPIC, 500, {"x-should-retry": "false"}),
        (
            "overloaded retry_after=3 should_retry=1",
            ANTHROPIC,
            529,
            {"retry-after": "3", "x-should-retry": "true"},
        ),
        ("overloaded retry_after=3", OPENAI, 503, {"retry-after": "3"}),
        ("unavailable retry_after=7", OPENAI, 503, {"retry-after": "7"}),
        ("unavailable retry_after=7", ANTHROPIC, 503, {"retry-after": "7"}),
    ],
)
async def test_retry_headers_follow_the_fault_parameters(
    fake: FakeProvider,
    client: httpx.AsyncClient,
    spec: str,
    route: str,
    status: int,
    headers: dict[str, str],
) -> None:
    fake.configure({"schedule": spec})

    response = await client.post(route, json=payload(route))

    assert response.status_code == status
    present = {
        k: response.headers[k]
        for k in ("retry-after", "retry-after-ms", "x-should-retry")
        if k in response.headers
    }
    assert present == headers


# --------------------------------------------------------------------------- connection faults


@pytest.mark.parametrize("route", ROUTES)
async def test_reset_aborts_the_connection_before_any_response(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "reset"})

    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await client.post(route, json=payload(route))

    assert (await client.post(route, json=payload(route))).status_code == 200
    assert fake.stats()["faults"] == {"reset": 1}


async def test_reset_is_a_tcp_rst(fake: FakeProvider) -> None:
    fake.configure({"schedule": "reset"})
    body = json.dumps(payload(OPENAI)).encode()
    request = (
        f"POST {OPENAI} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async with await trio.open_tcp_stream("127.0.0.1", fake.port) as raw:
        await raw.send_all(request)
        with pytest.raises(trio.BrokenResourceError) as caught:
            await raw.receive_some()

    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_refuse_resets_then_refuses_connects_for_a_while(
    clock: MockClock, fake: FakeProvider
) -> None:
    async with _client(fake.port) as idle, _client(fake.port) as client:
        assert (await idle.get("/v1/models")).status_code == 200  # leaves a keep-alive connection
        fake.configure({"schedule": "refuse for_s=5"})

        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.post(OPENAI, json=payload(OPENAI))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(httpx.ConnectError):
            await client.post(OPENAI, json=payload(OPENAI))
        with pytest.raises(httpx.ConnectError):  # its idle connection was closed too
            await idle.get("/v1/models")
        await trio.sleep(4)
        with pytest.raises(httpx.ConnectError):
            await client.post(OPENAI, json=payload(OPENAI))
        await trio.sleep(1.5)

        response = await client.post(OPENAI, json=payload(OPENAI))

    assert response.status_code == 200
    assert fake.stats()["faults"] == {"refuse": 1}


@pytest.mark.parametrize("route", ROUTES)
async def test_hang_never_answers(
    clock: MockClock, fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "hang"})
    start = trio.current_time()

    with pytest.raises(httpx.ReadTimeout):
        await client.post(route, json=payload(route))

    assert trio.current_time() - start >= CLIENT_TIMEOUT_S
    assert (await client.post(route, json=payload(route))).status_code == 200


async def test_hang_keeps_the_connection_open_without_a_byte(
    clock: MockClock, fake: FakeProvider
) -> None:
    fake.configure({"schedule": "hang"})
    body = json.dumps(payload(OPENAI)).encode()
    request = (
        f"POST {OPENAI} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    )

    async with await trio.open_tcp_stream("127.0.0.1", fake.port) as raw:
        await raw.send_all(request)
        with trio.move_on_after(600) as waited:
            await raw.receive_some()

    assert waited.cancelled_caught


# --------------------------------------------------------------------------- stream faults


@pytest.mark.parametrize("route", ROUTES)
async def test_slow_first_token_delays_the_first_chunk_not_the_headers(
    clock: MockClock, fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "slow_first_token delay_s=3"})
    start = trio.current_time()

    got = await stream(client, route)

    assert got.opened_at - start < 1
    assert got.text_times()[0] - got.opened_at >= 3
    assert got.texts() == ANSWER_WORDS
    assert got.terminated


@pytest.mark.parametrize("route", ROUTES)
async def test_slow_first_token_delays_a_whole_answer(
    clock: MockClock, fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "slow_first_token delay_s=3"})
    start = trio.current_time()

    response = await client.post(route, json=payload(route))

    assert response.status_code == 200
    assert trio.current_time() - start >= 3


@pytest.mark.parametrize("route", ROUTES)
async def test_slow_tokens_spaces_every_chunk(
    clock: MockClock, fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "slow_tokens delay_s=2", "answer": "one two three"})

    got = await stream(client, route)
    start = trio.current_time()
    whole = await client.post(route, json=payload(route, stream=False))
    whole_took_s = trio.current_time() - start

    times = [got.opened_at, *got.text_times()]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([2.0] * 3, abs=0.5)
    assert got.terminated
    assert whole.status_code == 200  # the schedule ran out: this one is on time
    assert whole_took_s < 1
    fake.configure({"schedule": "slow_tokens delay_s=2"})
    start = trio.current_time()
    slow = await client.post(route, json=payload(route), timeout=60)
    assert slow.status_code == 200
    assert trio.current_time() - start >= 2 * 3  # delay_s for each of the 3 chunks


@pytest.mark.parametrize("route", ROUTES)
async def test_cut_stops_the_stream_without_its_end(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "cut after=3"})

    got = await stream(client, route)

    assert got.status == 200
    assert isinstance(got.error, httpx.RemoteProtocolError)
    assert got.texts() == ANSWER_WORDS[:3]
    assert not got.terminated
    assert (await client.post(route, json=payload(route))).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
async def test_cut_of_a_whole_answer_is_a_short_body(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "cut"})

    with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):
        await client.post(route, json=payload(route))


@pytest.mark.parametrize("route", ROUTES)
async def test_stall_goes_silent_with_the_connection_open(
    clock: MockClock, fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "stall after=2 then stall"})

    got = await stream(client, route, give_up_after_s=3)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(route, json=payload(route))

    assert got.timed_out
    assert got.error is None
    assert got.texts() == ANSWER_WORDS[:2]
    assert not got.terminated


@pytest.mark.parametrize("route", ROUTES)
async def test_malformed_sends_one_bad_event_then_finishes(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "malformed after=2"})

    got = await stream(client, route)

    assert got.error is None
    assert len(got.undecodable()) == 1
    assert got.texts() == ANSWER_WORDS
    assert got.terminated
    bad_at = next(i for i, e in enumerate(got.events) if e.data in got.undecodable())
    texts_before = Streamed(route, events=got.events[:bad_at]).texts()
    assert texts_before == ANSWER_WORDS[:2]


@pytest.mark.parametrize("route", ROUTES)
async def test_malformed_whole_answer_is_not_json(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "malformed"})

    response = await client.post(route, json=payload(route))

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("route", ROUTES)
async def test_no_done_leaves_out_the_final_marker(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "no_done then no_done"})

    got = await stream(
        client, route, payload(route, stream=True, stream_options={"include_usage": True})
    )
    whole = await client.post(route, json=payload(route))

    assert got.error is None  # the HTTP body ended cleanly
    assert got.texts() == ANSWER_WORDS
    assert not got.terminated
    if route == OPENAI:
        assert got.objects()[-1]["usage"]["completion_tokens"] == 9
    else:
        assert got.events[-1].name == "message_delta"
    assert whole.status_code == 200
    assert whole.json()["usage"]


@pytest.mark.parametrize("route", ROUTES)
async def test_error_event_arrives_inside_a_200_stream(
    fake: FakeProvider, client: httpx.AsyncClient, route: str
) -> None:
    fake.configure({"schedule": "error_event after=1 then error_event"})

    got = await stream(client, route)
    whole = await client.post(route, json=payload(route))

    assert got.status == 200
    assert got.error is None
    assert got.texts() == ANSWER_WORDS[:1]
    assert not got.terminated
    last = got.events[-1]
    if route == OPENAI:
        assert last.json()["error"]["type"] == "server_error"
        assert "overloaded" in last.json()["error"]["message"]
    else:
        assert last.name == "error"
        assert last.json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        }
    assert whole.status_code == 500


# --------------------------------------------------------------------------- schedules & /_faults


async def test_a_schedule_runs_step_by_step(client: httpx.AsyncClient) -> None:
    await set_faults(
        client, schedule="fail 2 with rate_limit then ok 1 then server_error then repeat"
    )

    statuses = [(await client.post(OPENAI, json=payload(OPENAI))).status_code for _ in range(5)]

    assert statuses == [429, 429, 200, 500, 429]


async def test_per_key_wins_over_per_model_which_wins_over_the_default(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    await set_faults(
        client,
        schedule="fail forever with server_error",
        per_model={"big": "fail forever with overloaded"},
        per_key={"vip": "ok", "broke": "fail forever with billing"},
    )

    async def status(model: str, key: str) -> int:
        body = payload(ANTHROPIC, model=model)
        return (await client.post(ANTHROPIC, json=body, headers=auth(ANTHROPIC, key))).status_code

    assert await status("big", "vip") == 200
    assert await status("small", "vip") == 200
    assert await status("big", "other") == 529
    assert await status("small", "other") == 500
    assert await status("big", "broke") == 402
    assert fake.stats()["faults"] == {"overloaded": 1, "server_error": 1, "billing": 1}


async def test_a_new_schedule_starts_from_its_first_step(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    async def status(model: str) -> int:
        return (await client.post(OPENAI, json=payload(OPENAI, model=model))).status_code

    await set_faults(client, schedule="fail 1 with auth", per_model={"m": "fail 1 with quota"})
    assert [await status("n"), await status("m"), await status("m")] == [401, 429, 200]

    await set_faults(client, per_model={"m": "fail 1 with quota"}, answer="changed")

    assert await status("m") == 429  # a fresh cursor
    untouched = await client.post(OPENAI, json=payload(OPENAI, model="n"))
    assert untouched.status_code == 200  # the default plan was not restarted
    assert untouched.json()["choices"][0]["message"]["content"] == "changed"


async def test_probabilities_add_faults_on_ok_steps(client: httpx.AsyncClient) -> None:
    await set_faults(
        client, schedule="ok", probabilities={"unavailable retry_after=1": 1.0}, seed=7
    )

    response = await client.post(ANTHROPIC, json=payload(ANTHROPIC))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"schedule": "fail 2 with gremlins"}, "schedule"),
        ({"schedule": 3}, "schedule"),
        ({"probabilities": {"server_error": 1.5}}, "probabilities"),
        ({"probabilities": {"gremlins": 0.1}}, "probabilities"),
        ({"probabilities": {"server_error": 0.6, "auth": 0.6}}, "probabilities"),
        ({"seed": "seven"}, "seed"),
        ({"per_model": {"m": "fail with"}}, "per_model"),
        ({"per_key": ["k"]}, "per_key"),
        ({"answer": "{nope}"}, "answer"),
        ({"chunk_words": 0}, "chunk_words"),
        ({"chunk_words": True}, "chunk_words"),
        ({"chunk_delay_s": -1}, "chunk_delay_s"),
        ({"reject_prefill_openai": "yes"}, "reject_prefill_openai"),
        ({"chunk_words": 2, "gremlins": 1}, "gremlins"),
        ([1, 2], "body"),
    ],
)
async def test_bad_faults_body_is_400_naming_the_field_and_changes_nothing(
    fake: FakeProvider, client: httpx.AsyncClient, body: Any, field_name: str
) -> None:
    response = await client.post("/_faults", json=body)

    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert response.json()["error"]["field"] == field_name
    assert field_name in response.json()["error"]["message"]
    assert fake.config.chunk_words == 1
    assert (await client.post(OPENAI, json=payload(OPENAI))).status_code == 200


async def test_faults_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/_faults", content=b"{nope")

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"


def test_configure_raises_the_parse_errors() -> None:
    fake = FakeProvider()

    with pytest.raises(FaultSpecError, match="gremlins"):
        fake.configure({"schedule": "gremlins"})
    with pytest.raises(ValueError, match="chunk_words"):
        fake.configure({"chunk_words": -2})
    with pytest.raises(ValueError, match="unknown field"):
        fake.configure({"chunk_size": 2})
    with pytest.raises(FaultSpecError):
        FakeProvider(schedule="fail forever with auth then ok")
    with pytest.raises(ValueError, match="answer"):
        FakeProvider(answer="{prompt[0]}")
    assert fake.config.schedule == "ok"
    assert FakeProvider(seed=3, chunk_words=4).config.chunk_words == 4
    assert DEFAULT_ANSWER.format(prompt="x", model="m").endswith("x")


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("route", "body", "param", "needle"),
    [
        (OPENAI, b"{not json", None, "could not parse"),
        (
            OPENAI,
            {"messages": [{"role": "user", "content": "x"}]},
            "model",
            "Missing required parameter: 'model'",
        ),
        (OPENAI, {"model": "m"}, "messages", "Missing required parameter: 'messages'"),
        (OPENAI, {"model": "m", "messages": []}, "messages", "empty array"),
        (
            OPENAI,
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "Invalid type",
        ),
        (
            OPENAI,
            {"model": "m", "messages": [{"role": "x", "content": "a"}]},
            "messages[0].role",
            "Invalid value",
        ),
        (ANTHROPIC, b"[1]", None, "not valid JSON"),
        (
            ANTHROPIC,
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            None,
            "max_tokens: Field required",
        ),
        (ANTHROPIC, {"model": "m", "max_tokens": 5}, None, "messages: Field required"),
        (
            ANTHROPIC,
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            None,
            "messages.0.role",
        ),
    ],
)
async def test_a_bad_completion_request_is_a_400_in_its_format(
    fake: FakeProvider,
    client: httpx.AsyncClient,
    route: str,
    body: Any,
    param: str | None,
    needle: str,
) -> None:
    fake.configure({"schedule": "fail 1 with server_error"})
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}

    response = await client.post(route, **kwargs)

    assert response.status_code == 400
    got = response.json()
    if route == OPENAI:
        assert got["error"]["type"] == "invalid_request_error"
        assert got["error"]["param"] == param
        assert needle in got["error"]["message"]
    else:
        assert got["type"] == "error"
        assert got["error"]["type"] == "invalid_request_error"
        assert needle in got["error"]["message"]
    stats = fake.stats()
    assert (stats["requests"], stats["invalid"], stats["faults"]) == (1, 1, {})
    # No fault step was spent on it.
    assert (await client.post(route, json=payload(route))).status_code == 500


# --------------------------------------------------------------------------- other routes & stats


async def test_stats_count_completion_requests_by_route_key_and_model(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    await set_faults(client, per_key={"k2": "fail 1 with rate_limit"})
    await client.post(OPENAI, json=payload(OPENAI, model="a"), headers=auth(OPENAI, "k1"))
    await client.post(OPENAI, json=payload(OPENAI, model="a"), headers=auth(OPENAI, "k2"))
    await stream(
        client, ANTHROPIC, payload(ANTHROPIC, stream=True, model="b"), headers=auth(ANTHROPIC, "k1")
    )
    await client.post(ANTHROPIC, json=payload(ANTHROPIC, model="b"))
    await client.get("/v1/models")

    stats = (await client.get("/_stats")).json()

    assert stats == {
        "requests": 4,
        "by_route": {"POST /v1/chat/completions": 2, "POST /v1/messages": 2},
        "by_key": {"k1": 2, "k2": 1, "(none)": 1},
        "by_model": {"a": 2, "b": 2},
        "by_model_key": {"a|k1": 1, "a|k2": 1, "b|k1": 1, "b|(none)": 1},
        "faults": {"rate_limit": 1},
        "invalid": 0,
    }
    fake.reset_stats()
    assert fake.stats()["requests"] == 0
    assert fake.stats()["by_route"] == {}


async def test_models_lists_the_models_seen(client: httpx.AsyncClient) -> None:
    await client.post(OPENAI, json=payload(OPENAI, model="gpt-fake"))

    listing = (await client.get("/v1/models")).json()

    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["fake-model", "gpt-fake"]


async def test_unknown_routes_are_404_json(client: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/v2/nothing"), ("GET", OPENAI), ("DELETE", "/_stats")]:
        response = await client.request(method, path)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"no route for {method} {path}"


async def test_a_garbage_request_gets_400_and_the_server_lives_on(
    fake: FakeProvider, client: httpx.AsyncClient
) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", fake.port) as raw:
        await raw.send_all(b"this is not http\r\n\r\n")
        reply = b""
        while chunk := await raw.receive_some():
            reply += chunk

    assert reply.startswith(b"HTTP/1.1 400 ")
    assert (await client.post(OPENAI, json=payload(OPENAI))).status_code == 200


async def test_run_fake_provider_logs_its_address_and_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.providers.fake_server")

    def listening() -> re.Match[str] | None:
        return next(
            (
                m
                for r in caplog.records
                if (
                    m := re.fullmatch(
                        r"fake provider listening on http://127\.0\.0\.1:(\d+)", r.getMessage()
                    )
                )
            ),
            None,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                run_fake_provider, "127.0.0.1", 0, schedule="fail 1 with auth", seed=1
            )
        )
        await wait_until(lambda: listening() is not None, timeout_s=5)
        match = listening()
        assert match is not None
        async with _client(int(match.group(1))) as client:
            first = await client.post(ANTHROPIC, json=payload(ANTHROPIC))
            second = await client.post(ANTHROPIC, json=payload(ANTHROPIC))
        nursery.cancel_scope.cancel()

    assert (first.status_code, second.status_code) == (401, 200)
