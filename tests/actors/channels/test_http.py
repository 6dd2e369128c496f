"""The HTTP endpoint through a real daemon: probes, metrics, models, chat completions.

Each test starts the daemon's tree (with the HTTP child on a free port) on a
MockClock that only jumps when no loopback I/O is in flight, and talks to it
with httpx, or with the official `openai` SDK in a worker thread.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio
import trio.testing

from actors.app import Handles, attach_gateway, build_tree
from actors.channels.gateway import client_token
from actors.channels.metrics import Family, Sample, escape_label_value, render_families
from actors.config import GatewayConfig
from actors.errors import GatewayConfigError
from actors.events import (
    MESSAGE_RECEIVED,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    MessageReceived,
    MessageSending,
    MessageSent,
)
from runtime import EXIT_FAILED, ActorSystem, Veto
from tests.actors.harness import Daemon, daemon, io_clock, load
from tests.helpers import wait_until

TOKEN = "s3cret-token"


def config(*, word_delay_s: float = 0, extra: str = "") -> str:
    return f"""
[providers.local]
kind = "echo"
word_delay_s = {word_delay_s}
[providers.flaky]
kind = "faulty"
wraps = "local"
retries = 0
schedule = "fail forever with overloaded"
[providers.cutting]
kind = "faulty"
wraps = "local"
retries = 0
schedule = "fail forever with cut after=2"
[models]
primary = "local/echo"
[models.aliases]
fast = "local/echo"
[models.tiers]
code = ["flaky/coder", "local/echo"]
{extra}
"""


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@asynccontextmanager
async def http(d: Daemon, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        base_url=d.gateway.addresses["http"], headers=headers, timeout=120
    ) as client:
        yield client


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an event stream, in order."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


_SAMPLE = re.compile(r"^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-z_][a-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(
    text: str,
) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], set[str]]:
    """Samples by (name, labels), and the names that have both HELP and TYPE."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    helped: set[str] = set()
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in {"counter", "gauge"}
            typed.add(name)
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name in typed, f"{name} has no TYPE line before its samples"
            pairs = frozenset(_LABEL.findall(labels or ""))
            samples[(name, pairs)] = float(value)
    return samples, helped & typed


def metric(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


# -- probes ----------------------------------------------------------------------------------


async def test_health_and_readiness_until_draining(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        assert d.gateway.addresses["http"].startswith("http://127.0.0.1:")
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        await d.gateway.stop_intake()
        draining = await client.get("/readyz")
        still_alive = await client.get("/healthz")
        refused = await client.post("/v1/chat/completions", json={"messages": user("hi")})
    assert (health.status_code, health.json()) == (200, {"ok": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert (draining.status_code, draining.json()) == (503, {"ready": False, "reason": "draining"})
    assert still_alive.status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert error_of(refused)["code"] == "shutting_down"


async def test_unknown_routes_and_methods(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        missing = await client.get("/nope")
        wrong = await client.get("/v1/chat/completions")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


# -- metrics ---------------------------------------------------------------------------------


def test_label_values_and_help_are_escaped() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render_families(
        [Family("x_total", "counter", "two\nlines \\ here", (Sample((("k", 'v"1'),), 2.0),))]
    )
    assert (
        text
        == '# HELP x_total two\\nlines \\\\ here\n# TYPE x_total counter\nx_total{k="v\\"1"} 2\n'
    )


async def test_metrics_parse_and_move_with_requests(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        before = await client.get("/metrics")
        for _ in range(2):
            ok = await client.post("/v1/chat/completions", json={"messages": user("count me")})
            assert ok.status_code == 200
        failed = await client.post(
            "/v1/chat/completions",
            json={"model": "flaky/x", "messages": user("x"), "fallbacks": []},
        )
        assert failed.status_code == 503
        after = await client.get("/metrics")
    assert before.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    first, _ = parse_metrics(before.text)
    samples, described = parse_metrics(after.text)
    for name in (
        "callboard_requests_total",
        "callboard_http_requests_total",
        "callboard_failovers_total",
        "callboard_served_total",
        "callboard_failed_total",
        "callboard_active_cooldowns",
        "callboard_open_breakers",
        "callboard_restarts_total",
        "callboard_child_restarts",
        "callboard_mailbox_depth",
        "callboard_in_flight",
        "callboard_in_flight_all",
        "callboard_runs_total",
        "callboard_dead_letters_total",
        "callboard_hook_events_total",
        "callboard_sessions_active",
    ):
        assert name in described, name
    assert metric(first, "callboard_requests_total") == 0
    assert metric(samples, "callboard_requests_total") == 3
    route = "/v1/chat/completions"
    assert metric(samples, "callboard_http_requests_total", route=route, status="200") == 2
    assert metric(samples, "callboard_http_requests_total", route=route, status="503") == 1
    assert metric(samples, "callboard_http_requests_total", route="/metrics", status="200") == 1
    assert metric(samples, "callboard_served_total", model="local/echo") == 2
    assert metric(samples, "callboard_failed_total", reason="overloaded") == 1
    assert metric(samples, "callboard_open_breakers") == 1
    assert metric(first, "callboard_runs_total", state="final") == 0
    assert metric(samples, "callboard_runs_total", state="final") == 2
    assert metric(samples, "callboard_runs_total", state="error") == 1
    assert metric(samples, "callboard_in_flight", kind="http") == 0
    assert metric(samples, "callboard_in_flight_all") == 0
    assert metric(samples, "callboard_restarts_total") == 0
    assert metric(samples, "callboard_child_restarts", path="root/channels/http") == 0
    assert ("callboard_mailbox_depth", frozenset({("path", "root/models/failover")})) in samples
    assert metric(samples, "callboard_dead_letters_total", reason="mailbox_full") == 0
    assert metric(samples, "callboard_sessions_active") == 0


# -- models ----------------------------------------------------------------------------------


async def test_models_lists_configured_models_aliases_and_auto(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        listed = await client.get("/v1/models")
        one = await client.get("/v1/models/local/echo")
        missing = await client.get("/v1/models/nope/nothing")
    body = listed.json()
    assert body["object"] == "list"
    owners = {m["id"]: m["owned_by"] for m in body["data"]}
    assert owners == {
        "local/echo": "local",
        "flaky/coder": "flaky",
        "fast": "local",
        "auto": "callboard",
    }
    assert all(m["object"] == "model" and m["created"] == 0 for m in body["data"])
    assert one.json() == {"id": "local/echo", "object": "model", "created": 0, "owned_by": "local"}
    assert missing.status_code == 404


# -- whole answers ---------------------------------------------------------------------------


async def test_a_whole_completion(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "fast",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
                ],
                "temperature": 0.5,
                "max_completion_tokens": 50,
                "tools": [],  # unknown to this endpoint: ignored
                "frequency_penalty": 0,
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "local/echo"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "echo: hello there"
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    assert response.headers["x-callboard-model"] == "local/echo"
    assert response.headers["x-callboard-attempts"] == "local/echo:ok"
    assert body["id"] == f"chatcmpl-{response.headers['x-callboard-request-id']}"
    assert body["callboard"]["attempts"][0]["reason"] == "ok"


async def test_fallbacks_from_the_body_serve_when_the_primary_fails(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(extra=""), tmp_path) as d, http(d) as client:
        whole = await client.post(
            "/v1/chat/completions",
            json={"model": "flaky/x", "fallbacks": ["fast"], "messages": user("still here")},
        )
        streamed = await client.post(
            "/v1/chat/completions",
            json={
                "model": "flaky/x",
                "fallbacks": ["local/echo"],
                "messages": user("and streamed"),
                "stream": True,
            },
        )
        alone = await client.post(
            "/v1/chat/completions",
            json={"model": "flaky/y", "fallbacks": [], "messages": user("x")},
        )
    assert whole.status_code == 200
    assert whole.json()["choices"][0]["message"]["content"] == "echo: still here"
    assert whole.headers["x-callboard-model"] == "local/echo"
    assert whole.headers["x-callboard-attempts"] == "flaky/x:overloaded,local/echo:ok"
    events = sse_events(streamed.text)
    assert events[-1] == "[DONE]"
    final = next(json.loads(e) for e in events if '"finish_reason":"stop"' in e)
    assert final["model"] == "local/echo"
    assert final["callboard"]["model"] == "local/echo"
    trail = [(a["model"], a["reason"]) for a in final["callboard"]["attempts"]]
    assert trail[0][0] == "flaky/x" and trail[0][1] != "ok"  # overloaded, or skipped: breaker open
    assert trail[-1] == ("local/echo", "ok")
    assert alone.status_code == 503
    assert error_of(alone)["code"] == "overloaded"
    assert alone.headers["x-callboard-attempts"] == "flaky/y:overloaded"
    assert "x-callboard-model" not in alone.headers


# -- streams ---------------------------------------------------------------------------------


async def test_a_streamed_completion(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "local/echo",
                "messages": user("one two three"),
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-callboard-request-id"]
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: one two three"
    content_chunks = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"]]
    assert len(content_chunks) == 4  # one per word
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["callboard"] == {
        "model": "local/echo",
        "attempts": [final["callboard"]["attempts"][0]],
    }
    assert final["callboard"]["attempts"][0]["reason"] == "ok"
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_a_stream_cut_mid_answer_ends_with_an_error_and_no_done(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "cutting/x",
                "fallbacks": [],
                "messages": user("a long answer that will not arrive whole"),
                "stream": True,
            },
        )
    events = sse_events(response.text)
    assert "[DONE]" not in events
    chunks = [json.loads(e) for e in events]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "echo: a"
    last = chunks[-1]
    assert last["error"]["code"] == "stream_cut" and last["error"]["message"]
    assert last["callboard"]["attempts"][0]["model"] == "cutting/x"


async def test_a_client_that_disconnects_aborts_its_request(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(word_delay_s=1), tmp_path) as d, http(d) as client:
        body = {"messages": user(" ".join(["word"] * 50)), "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if '"content":"echo:"' in line:
                    break
        await wait_until(lambda: not d.gateway.runs and d.system.inflight.count == 0)
        assert d.gateway.counters["runs_aborted"] == 1


async def test_an_answer_cut_at_the_drain_deadline_is_a_503(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(word_delay_s=1), tmp_path) as d, http(d) as client:
        results: dict[str, httpx.Response] = {}

        async def ask() -> None:
            results["r"] = await client.post(
                "/v1/chat/completions", json={"messages": user(" ".join(["word"] * 50))}
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await wait_until(lambda: bool(d.gateway.runs))
            await d.gateway.stop_intake()
            await d.gateway.cut_runs()
    response = results["r"]
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert error_of(response)["code"] == "shutdown"


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({}, 400, "messages"),
        ({"messages": "hello"}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, 400, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "messages[0].content[0].type",
        ),
        ({"messages": user("x"), "model": 3}, 400, "model"),
        ({"messages": user("x"), "model": "nowhere/x"}, 404, "model"),
        ({"messages": user("x"), "model": "gpt-4o"}, 404, "model"),
        ({"messages": user("x"), "stream": "yes"}, 400, "stream"),
        (
            {"messages": user("x"), "stream_options": {"include_usage": 1}},
            400,
            "stream_options.include_usage",
        ),
        ({"messages": user("x"), "temperature": "hot"}, 400, "temperature"),
        ({"messages": user("x"), "temperature": 3}, 400, "temperature"),
        ({"messages": user("x"), "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": user("x"), "max_completion_tokens": 1.5}, 400, "max_completion_tokens"),
        ({"messages": user("x"), "user": 7}, 400, "user"),
        ({"messages": user("x"), "n": 2}, 400, "n"),
        ({"messages": user("x"), "fallbacks": "local/echo"}, 400, "fallbacks"),
        ({"messages": user("x"), "fallbacks": ["nowhere/x"]}, 400, "fallbacks[0]"),
        ([1, 2], 400, None),
    ],
)
async def test_invalid_bodies_are_refused_naming_the_field(
    clock: trio.testing.MockClock, tmp_path: Path, body: object, status: int, param: str | None
) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        response = await client.post("/v1/chat/completions", json=body)
        assert d.gateway.counters["runs"] == 0
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert param.split("[")[0].split(".")[0] in error["message"]


async def test_a_body_that_is_not_json(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(), tmp_path) as d, http(d) as client:
        response = await client.post(
            "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
        )
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"


# -- auth ------------------------------------------------------------------------------------


async def test_a_configured_token_is_required(
    clock: trio.testing.MockClock,
    tmp_path: Path,
) -> None:
    # The token is read from the gateway's `env` (the daemon's environment: os.environ
    # in `callboard run`, the mapping given to the harness here).
    async with daemon(config(), tmp_path, {"CALLBOARD_TOKEN": TOKEN}) as d:
        async with http(d) as anonymous:
            health = await anonymous.get("/healthz")
            models = await anonymous.get("/v1/models")
            metrics = await anonymous.get("/metrics")
            chat = await anonymous.post("/v1/chat/completions", json={"messages": user("x")})
        async with http(d, "wrong") as wrong:
            bad = await wrong.get("/v1/models")
        async with http(d, TOKEN) as good:
            allowed = await good.get("/v1/models")
            answered = await good.post("/v1/chat/completions", json={"messages": user("x")})
    assert health.status_code == 200
    for refused in (models, metrics, chat, bad):
        assert refused.status_code == 401
        assert error_of(refused)["code"] == "invalid_api_key"
    assert allowed.status_code == 200 and answered.status_code == 200


def test_the_token_is_read_from_the_named_variable() -> None:
    assert client_token(GatewayConfig(token_env="MY_TOKEN"), {"MY_TOKEN": "t"}) == "t"
    assert client_token(GatewayConfig(), {"CALLBOARD_TOKEN": ""}) is None
    assert client_token(GatewayConfig(bind="0.0.0.0"), {"CALLBOARD_TOKEN": "t"}) == "t"
    assert client_token(GatewayConfig(bind="[::1]"), {}) is None
    with pytest.raises(GatewayConfigError, match=r"gateway\.bind.*CALLBOARD_TOKEN"):
        client_token(GatewayConfig(bind="0.0.0.0"), {})
    with pytest.raises(GatewayConfigError):
        client_token(GatewayConfig(bind="my-host.example"), {})


async def test_exposed_channels_without_a_token_refuse_to_start(
    clock: trio.testing.MockClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loaded = load(config(extra='[gateway]\nbind = "0.0.0.0"\n'), tmp_path)
    handles = Handles()
    tree, _ = build_tree(loaded, handles, env={})
    system = ActorSystem()
    assert handles.gateway is not None
    attach_gateway(system, handles.gateway)
    assert await system.run(tree.spec, handle_signals=False) == EXIT_FAILED
    assert "gateway.bind" in caplog.text and "CALLBOARD_TOKEN" in caplog.text
    assert "http" not in handles.gateway.addresses
    assert "websocket" not in handles.gateway.addresses


# -- hooks -----------------------------------------------------------------------------------


async def test_message_hooks_see_rewrite_and_veto(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    received: list[MessageReceived] = []
    sent: list[MessageSent] = []
    mode = {"now": "rewrite"}

    async def on_received(payload: MessageReceived) -> None:
        received.append(payload)

    async def on_sent(payload: MessageSent) -> None:
        sent.append(payload)

    async def on_sending(payload: MessageSending) -> MessageSending | Veto:
        if mode["now"] == "veto":
            return Veto("not today")
        return dataclasses.replace(payload, text=payload.text.upper())

    async with daemon(config(), tmp_path) as d, http(d) as client:
        d.system.hooks.observe(MESSAGE_RECEIVED, on_received)
        d.system.hooks.observe(MESSAGE_SENT, on_sent)
        d.system.hooks.intercept(MESSAGE_SENDING, on_sending)
        rewritten = await client.post(
            "/v1/chat/completions", json={"messages": user("quiet please"), "user": "alice"}
        )
        await wait_until(lambda: len(sent) == 1)
        mode["now"] = "veto"
        vetoed = await client.post("/v1/chat/completions", json={"messages": user("x")})
        vetoed_stream = await client.post(
            "/v1/chat/completions", json={"messages": user("x y"), "stream": True}
        )
        await wait_until(lambda: len(received) == 3)
    assert rewritten.json()["choices"][0]["message"]["content"] == "ECHO: QUIET PLEASE"
    assert received[0].channel == "http" and received[0].session_key == "main:http:alice"
    assert received[0].text == "quiet please" and received[0].sender == "alice"
    assert received[1].session_key == "main:http:anonymous"
    assert received[0].run_id == rewritten.headers["x-callboard-request-id"]
    assert [(s.text, s.model) for s in sent] == [("ECHO: QUIET PLEASE", "local/echo")]
    assert vetoed.status_code == 403 and error_of(vetoed)["code"] == "cancelled"
    assert "not today" in error_of(vetoed)["message"]
    events = sse_events(vetoed_stream.text)
    assert "[DONE]" not in events and json.loads(events[-1])["error"]["code"] == "cancelled"
    assert len(sent) == 1  # nothing vetoed was reported as sent


# -- the official SDK ------------------------------------------------------------------------


async def test_the_openai_sdk_works_unchanged(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d:
        base_url = f"{d.gateway.addresses['http']}/v1"

        def use_the_sdk() -> dict[str, Any]:
            with openai.OpenAI(base_url=base_url, api_key="unused") as sdk:
                raw = sdk.chat.completions.with_raw_response.create(
                    model="local/echo", messages=[{"role": "user", "content": "hi from the sdk"}]
                )
                whole = raw.parse()
                chunks = list(
                    sdk.chat.completions.create(
                        model="auto",
                        messages=[{"role": "user", "content": "stream this"}],
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                models = [m.id for m in sdk.models.list()]
                try:
                    list(
                        sdk.chat.completions.create(
                            model="cutting/x",
                            messages=[{"role": "user", "content": "this answer gets cut short"}],
                            stream=True,
                            extra_body={"fallbacks": []},
                        )
                    )
                except openai.APIError as exc:
                    cut = exc.code
                else:
                    cut = None
            return {"raw": raw, "whole": whole, "chunks": chunks, "models": models, "cut": cut}

        out = await trio.to_thread.run_sync(use_the_sdk)
    assert out["whole"].choices[0].message.content == "echo: hi from the sdk"
    assert out["whole"].model == "local/echo"
    assert out["whole"].usage.total_tokens == out["whole"].usage.prompt_tokens + 5
    assert out["raw"].headers["x-callboard-attempts"] == "local/echo:ok"
    chunks = out["chunks"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream this"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert {"local/echo", "fast", "auto"} <= set(out["models"])
    assert out["cut"] == "stream_cut"


async def test_a_port_in_use_is_a_start_error_naming_it(
    clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        loaded = load(config(extra=f"[gateway]\nhttp_port = {port}\n"), tmp_path)
        handles = Handles()
        tree, _ = build_tree(loaded, handles, env={})
        system = ActorSystem()
        assert handles.gateway is not None
        attach_gateway(system, handles.gateway)
        assert await system.run(tree.spec, handle_signals=False) == EXIT_FAILED
    assert f"HttpStartError: http: cannot listen on 127.0.0.1:{port}" in caplog.text
