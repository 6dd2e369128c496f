"""The WebSocket gateway through a real daemon: protocol, errors, slow clients, the drain."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

from actors.channels.client import GatewayClient, _closing_transport
from actors.errors import GatewayError
from actors.events import MESSAGE_RECEIVED, MESSAGE_SENDING, MESSAGE_SENT
from runtime import Veto
from tests.actors.harness import Daemon, daemon, io_clock
from tests.helpers import wait_until


def config(*, word_delay_s: float = 0, extra: str = "") -> str:
    return f"""
[providers.local]
kind = "echo"
word_delay_s = {word_delay_s}
[models]
primary = "local/echo"
{extra}
"""


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


def url(d: Daemon) -> str:
    return d.gateway.addresses["websocket"]


@asynccontextmanager
async def raw_websocket(address: str) -> AsyncIterator[Any]:
    """A trio-websocket connection whose socket is closed however it ends."""
    async with open_websocket_url(address) as ws, _closing_transport(ws):
        yield ws


async def raw_request(ws: Any, frame: object) -> dict[str, Any]:
    await ws.send_message(frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def test_a_chat_streams_deltas_then_final(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, GatewayClient.connect(url(d)) as client:
        pieces: list[str] = []

        async def on_delta(text: str) -> None:
            pieces.append(text)

        final = await client.chat("alice", "hello there", on_delta=on_delta)
        history = await client.request("chat.history", {"session": "alice", "limit": 10})
    assert final["state"] == "final" and final["text"] == "echo: hello there"
    assert final["session"] == "main:ws:alice" and final["model"] == "local/echo"
    assert final["attempts"][0]["reason"] == "ok" and final["usage"]["output_tokens"] == 3
    assert "".join(pieces) == final["text"]
    assert [m["content"] for m in history["messages"]] == ["hello there", "echo: hello there"]


async def test_events_carry_increasing_sequence_numbers(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, raw_websocket(url(d)) as ws:
        await raw_request(ws, {"type": "req", "id": 1, "method": "connect", "params": {}})
        started = await raw_request(
            ws,
            {
                "type": "req",
                "id": 2,
                "method": "chat.send",
                "params": {"session": "s", "text": "a b c"},
            },
        )
        assert started["ok"] and started["payload"]["run_id"]
        seqs, states = [], []
        while not states or states[-1] == "delta":
            event = json.loads(await ws.get_message())
            assert event["type"] == "event" and event["event"] == "chat"
            seqs.append(event["seq"])
            states.append(event["payload"]["state"])
    assert seqs == list(range(1, len(seqs) + 1))
    assert states == ["delta"] * 4 + ["final"]


async def test_malformed_frames_get_errors_and_the_connection_stays(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, raw_websocket(url(d)) as ws:
        not_json = await raw_request(ws, "{not json")
        assert not_json["id"] is None and not_json["error"]["code"] == "bad_json"
        early = await raw_request(ws, {"type": "req", "id": "a", "method": "health"})
        assert early["error"]["code"] == "not_connected"
        assert (await raw_request(ws, {"type": "req", "id": "b", "method": "connect"}))["ok"]
        unknown = await raw_request(ws, {"type": "req", "id": "c", "method": "chat.dance"})
        assert (unknown["id"], unknown["error"]["code"]) == ("c", "unknown_method")
        bad = await raw_request(
            ws, {"type": "req", "id": "d", "method": "chat.send", "params": {"text": "x"}}
        )
        assert bad["error"]["code"] == "bad_params" and "params.session" in bad["error"]["message"]
        extra = await raw_request(
            ws, {"type": "req", "id": "e", "method": "health", "params": {"x": 1}}
        )
        assert extra["error"]["code"] == "bad_params" and "params.x" in extra["error"]["message"]
        no_id = await raw_request(ws, {"type": "req", "method": "health"})
        assert no_id["id"] is None and no_id["error"]["code"] == "bad_request"
        key = await raw_request(
            ws,
            {
                "type": "req",
                "id": "f",
                "method": "chat.send",
                "params": {"session": "a:b", "text": "x"},
            },
        )
        assert key["error"]["code"] == "bad_params" and "session key" in key["error"]["message"]
        health = await raw_request(ws, {"type": "req", "id": "g", "method": "health"})
        assert health["ok"] and health["payload"]["ok"] is True


async def test_tokens_are_checked(
    clock: trio.testing.MockClock,
    tmp_path: Path,
) -> None:
    async with daemon(config(), tmp_path, {"CALLBOARD_TOKEN": "s3cret"}) as d:
        with pytest.raises(GatewayError, match="unauthorized"):
            async with GatewayClient.connect(url(d), token="wrong"):
                pass
        async with raw_websocket(url(d)) as ws:
            answer = await raw_request(
                ws, {"type": "req", "id": 1, "method": "connect", "params": {"token": "nope"}}
            )
            assert answer["error"]["code"] == "unauthorized"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1008
        async with GatewayClient.connect(url(d), token="s3cret") as client:
            assert (await client.request("health"))["ok"]


async def test_a_frame_over_the_limit_closes_with_1009(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, raw_websocket(url(d)) as ws:
        await raw_request(ws, {"type": "req", "id": 1, "method": "connect"})
        await ws.send_message("x" * (d.loaded.config.gateway.max_frame_bytes + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1009


async def _raw_ws(address: str) -> tuple[trio.SocketStream, Any]:
    """A WebSocket client on a bare socket (wsproto), so a test decides when it reads."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    host, port = address.removeprefix("ws://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=host, target="/")))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            return stream, ws


async def test_a_slow_client_is_dropped_without_stalling_others(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    from wsproto.events import CloseConnection, Message

    toml = config(extra="[gateway]\nsend_queue = 4\nmax_frame_bytes = 2000000\n")
    async with daemon(toml, tmp_path) as d:
        stream, ws = await _raw_ws(url(d))
        async with stream:
            for frame in (
                {"type": "req", "id": 1, "method": "connect"},
                # A long answer streams as tens of thousands of frames; this client reads none.
                {
                    "type": "req",
                    "id": 2,
                    "method": "chat.send",
                    "params": {"session": "slow", "text": "word " * 60_000},
                },
            ):
                await stream.send_all(ws.send(Message(data=json.dumps(frame))))
            await wait_until(lambda: d.gateway.counters["runs"] == 1)
            async with GatewayClient.connect(url(d)) as fast:
                final = await fast.chat("fast", "still here?")
                assert final["text"] == "echo: still here?"  # not held up by the slow one
            code = None
            with trio.fail_after(60):
                while code is None:
                    data = await stream.receive_some(1 << 20)
                    if not data:
                        break
                    ws.receive_data(data)
                    for event in ws.events():
                        if isinstance(event, CloseConnection):
                            code = event.code
    assert code == 1013


async def test_abort_ends_a_run_with_its_partial_text(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with (
        daemon(config(word_delay_s=1), tmp_path) as d,
        GatewayClient.connect(url(d)) as client,
    ):
        pieces: list[str] = []
        run_ids: list[str] = []

        async def on_delta(text: str) -> None:
            pieces.append(text)
            if len(pieces) == 2:
                (run_id,) = [r.run_id for r in d.gateway.runs.values()]
                run_ids.append(run_id)
                assert (await client.request("chat.abort", {"run_id": run_id}))["aborted"] is True

        final = await client.chat("alice", "one two three four five", on_delta=on_delta)
        unknown = await client.request("chat.abort", {"run_id": "no-such-run"})
    assert final["state"] == "aborted" and final["text"] == "echo: one"
    assert unknown["aborted"] is False


async def test_a_resent_message_with_its_idempotency_key_runs_once(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(word_delay_s=1), tmp_path) as d:
        async with GatewayClient.connect(url(d)) as client:
            first, second = {}, {}

            async def send(into: dict[str, Any]) -> None:
                into.update(await client.chat("alice", "once please", idempotency_key="k-1"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, first)
                await trio.sleep(1.5)  # resent while the first is running
                nursery.start_soon(send, second)
            again = await client.chat(
                "alice", "once please", idempotency_key="k-1"
            )  # after it ended
            await trio.sleep(301)
            later = await client.chat("alice", "once please", idempotency_key="k-1")  # key expired
        history = await d.sessions.history("main:ws:alice")
    assert first["run_id"] == second["run_id"] == again["run_id"] != later["run_id"]
    assert first["state"] == second["state"] == again["state"] == "final"
    assert [m["content"] for m in history].count("once please") == 2


async def test_sessions_list_reset_health_and_status(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, GatewayClient.connect(url(d)) as client:
        await client.chat("alice", "hi")
        await client.chat("main:ws:bob", "hi")
        listed = await client.request("sessions.list")
        reset = await client.request("sessions.reset", {"session": "alice"})
        history = await client.request("chat.history", {"session": "alice"})
        health = await client.request("health")
        status = await client.request("status")
    assert {s["key"] for s in listed["sessions"]} == {"main:ws:alice", "main:ws:bob"}
    assert reset["session"] == "main:ws:alice" and history["messages"] == []
    assert health == {"ok": True, "draining": False, "connections": 1, "runs": 0}
    tree = status["tree"]
    assert tree["name"] == "root"
    assert [c["name"] for c in tree["children"]] == ["store", "models", "sessions", "channels"]
    sessions = next(c for c in tree["children"] if c["name"] == "sessions")
    assert {c["name"] for c in sessions["children"]} == {
        "session:main:ws:alice",
        "session:main:ws:bob",
    }


async def test_a_client_that_leaves_mid_run_still_gets_its_answer_written(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(word_delay_s=1), tmp_path) as d:
        async with raw_websocket(url(d)) as ws:
            await raw_request(ws, {"type": "req", "id": 1, "method": "connect"})
            await raw_request(
                ws,
                {
                    "type": "req",
                    "id": 2,
                    "method": "chat.send",
                    "params": {"session": "gone", "text": "remember this"},
                },
            )
        await trio.sleep(10)
        history = await d.sessions.history("main:ws:gone")
    assert [m["content"] for m in history] == ["remember this", "echo: remember this"]


async def test_message_hooks_fire_and_may_rewrite_or_cancel(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d, GatewayClient.connect(url(d)) as client:
        seen: list[tuple[str, Any]] = []

        async def received(p: Any) -> None:
            seen.append(("received", p))

        async def sent(p: Any) -> None:
            seen.append(("sent", p))

        async def shout(p: Any) -> Any:
            if "secret" in p.text:
                return Veto("no secrets")
            return dataclasses.replace(p, text=p.text.upper())

        d.system.hooks.observe(MESSAGE_RECEIVED, received)
        d.system.hooks.observe(MESSAGE_SENT, sent)
        d.system.hooks.intercept(MESSAGE_SENDING, shout)
        loud = await client.chat("alice", "hello")
        cancelled = await client.chat("alice", "a secret")
        await trio.sleep(1)
    assert loud["state"] == "final" and loud["text"] == "ECHO: HELLO"
    assert cancelled["state"] == "error" and cancelled["error"]["code"] == "cancelled"
    assert "no secrets" in cancelled["error"]["message"]
    kinds = [k for k, _ in seen]
    assert kinds == ["received", "sent", "received"]
    assert seen[0][1].channel == "websocket" and seen[0][1].session_key == "main:ws:alice"
    assert seen[1][1].text == "ECHO: HELLO"


async def test_draining_refuses_new_work_and_finishes_runs_in_flight(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with (
        daemon(config(word_delay_s=1), tmp_path) as d,
        GatewayClient.connect(url(d)) as client,
    ):
        results: dict[str, Any] = {}

        async def long_run() -> None:
            results["run"] = await client.chat("alice", "one two three")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_run)
            await trio.sleep(1.5)
            await d.gateway.stop_intake()
            with pytest.raises(GatewayError) as refused:
                await client.chat("bob", "too late")
            with pytest.raises(GatewayError):
                async with GatewayClient.connect(url(d)):
                    pass
    assert refused.value.code == "shutting_down" and refused.value.retryable
    assert results["run"]["state"] == "final" and results["run"]["text"] == "echo: one two three"


async def test_the_drain_deadline_cuts_runs_with_a_shutdown_error(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with (
        daemon(config(word_delay_s=1), tmp_path) as d,
        GatewayClient.connect(url(d)) as client,
    ):
        results: dict[str, Any] = {}

        async def long_run() -> None:
            results["run"] = await client.chat("alice", " ".join(["word"] * 50))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_run)
            await trio.sleep(3.5)
            await d.gateway.stop_intake()
            await d.gateway.cut_runs()
        history = await d.sessions.history("main:ws:alice")
    run = results["run"]
    assert (
        run["state"] == "error" and run["error"]["code"] == "shutdown" and run["error"]["retryable"]
    )
    assert run["text"].startswith("echo: word")
    assert history[0]["content"].startswith("word word")  # the user's message was kept


async def test_new_connections_are_closed_while_draining(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d:
        await d.gateway.stop_intake()
        with pytest.raises(GatewayError) as refused:
            async with GatewayClient.connect(url(d)):
                pass
        async with raw_websocket(url(d)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert refused.value.code == "shutting_down" and refused.value.retryable
    assert (closed.value.reason.code, closed.value.reason.reason) == (1012, "shutting_down")
