"""The event catalogue through a real daemon: each event fires once per occurrence,
in the documented order, with payloads that agree with each other.

A recording plugin (`tests.actors.plugins.recorder`) is loaded from `[hooks]
plugins` like any plugin; its observers are `ordered`, so it sees the events in
the order they happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.channels.client import GatewayClient
from actors.events import (
    ChildRestarted,
    GatewayStart,
    GatewayStop,
    MessageReceived,
    MessageSending,
    MessageSent,
    ModelFailover,
    ModelRequestSent,
    ModelResponse,
    ModelSelect,
    SessionCompacted,
    SessionCreated,
    SessionReset,
    SessionUpdated,
    SupervisorEscalated,
)
from actors.sessions.messages import session_actor_name
from runtime import ActorCrashed, Message
from tests.actors.harness import Daemon, daemon, io_clock
from tests.actors.plugins.configs import ECHO, FLAKY
from tests.actors.plugins.recorder import RECORDS
from tests.helpers import wait_until

RECORDER = """
[hooks]
plugins = ["tests.actors.plugins.recorder"]
"""
TURN: list[str] = [
    "message:received",
    "model:select",
    "model:request",
    "model:response",
    "session:updated",
    "message:sending",
    "message:sent",
]
"""A turn's events, as the README documents them (session:created after the first)."""


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


def names(records: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in records]


def payloads(records: list[tuple[str, Any]], name: str) -> list[Any]:
    return [p for n, p in records if n == name]


async def chat(d: Daemon, session: str, text: str) -> dict[str, Any]:
    async with GatewayClient.connect(d.gateway.addresses["websocket"]) as client:
        return await client.chat(session, text)


async def settled(records: list[tuple[str, Any]]) -> None:
    """Let the recorder's lane catch up (it runs beside the daemon)."""
    count = -1
    while count != len(records):
        count = len(records)
        await trio.sleep(1)


async def test_a_websocket_turn_fires_each_event_once_in_order(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(RECORDER + ECHO, tmp_path) as d:
        records = RECORDS[str(tmp_path)]
        first = await chat(d, "alice", "hello")
        second = await chat(d, "alice", "again")
        await settled(records)
        during = names(records)
    assert first["state"] == second["state"] == "final"
    assert during == [
        "gateway:start",
        "message:received",
        "session:created",
        *TURN[1:],
        *TURN,
    ]
    assert names(records)[-1] == "gateway:stop"  # once, at the stop
    assert names(records).count("gateway:stop") == 1

    (start,) = payloads(records, "gateway:start")
    assert isinstance(start, GatewayStart)
    assert start.channels == ("http", "websocket")
    assert start.ws_url == d.gateway.addresses["websocket"]
    (created,) = payloads(records, "session:created")
    assert isinstance(created, SessionCreated)
    assert (created.key, created.channel) == ("main:ws:alice", "websocket")

    # Each turn's payloads agree: one run id for the message events and the
    # session update, one request id for the model events.
    for n, answer in enumerate((first, second)):
        received: MessageReceived = payloads(records, "message:received")[n]
        sending: MessageSending = payloads(records, "message:sending")[n]
        sent: MessageSent = payloads(records, "message:sent")[n]
        updated: SessionUpdated = payloads(records, "session:updated")[n]
        select: ModelSelect = payloads(records, "model:select")[n]
        request: ModelRequestSent = payloads(records, "model:request")[n]
        response: ModelResponse = payloads(records, "model:response")[n]
        run_id = answer["run_id"]
        assert received.run_id == sending.run_id == sent.run_id == updated.run_id == run_id
        assert received.channel == sent.channel == "websocket"
        assert received.text == ("hello", "again")[n]
        assert sent.text == answer["text"] == response.result.text
        assert select.request_id == request.request_id == response.request_id
        assert select.session_key == response.session_key == "main:ws:alice"
        assert (select.source, select.chain) == ("default", ("local/echo",))
        assert (request.model, request.attempt) == ("local/echo", 1)
        assert updated.turns == n + 1
        assert sent.attempts == response.result.attempts
    (stop,) = payloads(records, "gateway:stop")
    assert isinstance(stop, GatewayStop)
    assert stop.in_flight == 0


async def test_a_failover_turn_fires_the_failover_between_its_requests(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(RECORDER + FLAKY, tmp_path) as d:
        records = RECORDS[str(tmp_path)]
        answer = await chat(d, "bob", "hello")
        await settled(records)
    assert answer["state"] == "final"
    assert answer["model"] == "local/echo"
    assert names(records)[1:-1] == [
        "message:received",
        "session:created",
        "model:select",
        "model:request",
        "model:failover",
        "model:request",
        "model:response",
        "session:updated",
        "message:sending",
        "message:sent",
    ]
    (failover,) = payloads(records, "model:failover")
    assert isinstance(failover, ModelFailover)
    assert (failover.from_model, failover.reason, failover.to_model) == (
        "flaky/main",
        "overloaded",
        "local/echo",
    )
    requests = payloads(records, "model:request")
    assert [(r.model, r.attempt) for r in requests] == [("flaky/main", 1), ("local/echo", 2)]
    (sent,) = payloads(records, "message:sent")
    assert [(a.model, a.reason) for a in sent.attempts] == [
        ("flaky/main", "overloaded"),
        ("local/echo", "ok"),
    ]


async def test_a_compaction_fires_its_own_request_then_session_compacted_once(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    compacting = "\n[agent.compaction]\nafter_turns = 3\nkeep_turns = 1\n"
    async with daemon(RECORDER + ECHO + compacting, tmp_path) as d:
        records = RECORDS[str(tmp_path)]
        for n in range(3):
            await chat(d, "carol", f"turn {n}")
        await wait_until(lambda: "session:compacted" in names(records))
        await settled(records)
    (compacted,) = payloads(records, "session:compacted")
    assert isinstance(compacted, SessionCompacted)
    assert (compacted.key, compacted.through_turn, compacted.kept_turns) == ("main:ws:carol", 2, 1)
    # Three turns' requests, and one more: the summary, before session:compacted.
    selects = payloads(records, "model:select")
    assert len(selects) == 4
    summary_id = selects[-1].request_id
    summary = [n for n, p in records if getattr(p, "request_id", None) == summary_id]
    assert summary == ["model:select", "model:request", "model:response"]
    assert names(records).index("session:compacted") > max(
        i for i, (_, p) in enumerate(records) if getattr(p, "request_id", None) == summary_id
    )
    assert names(records).count("session:updated") == 3
    assert names(records).count("message:sent") == 3


async def test_reset_fires_session_reset_once(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(RECORDER + ECHO, tmp_path) as d:
        records = RECORDS[str(tmp_path)]
        await chat(d, "dave", "hello")
        reply = await chat(d, "dave", "/new")
        await settled(records)
    assert reply["state"] == "final"
    (reset,) = payloads(records, "session:reset")
    assert isinstance(reset, SessionReset)
    (created,) = payloads(records, "session:created")
    assert reset.old_session_id == created.session_id != reset.new_session_id
    # A chat command is answered by the session, not a model: no model events.
    assert names(records).count("model:select") == 1
    assert names(records).count("message:sent") == 2


class Unexpected(Message):
    """A message no session actor understands: it crashes the actor."""


async def test_an_actor_restart_and_an_escalation_fire_once_each(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # A sessions supervisor allowed no restart escalates at the first crash,
    # and the root restarts it.
    strict = "\n[supervision.sessions]\nmax_restarts = 0\n"
    async with daemon(RECORDER + ECHO + strict, tmp_path) as d:
        records = RECORDS[str(tmp_path)]
        await chat(d, "erin", "hello")
        session = d.system.registry.lookup(session_actor_name("main:ws:erin"))
        with pytest.raises(ActorCrashed):
            await session.ask(Unexpected(), 5)
        await wait_until(lambda: "actor:restarted" in names(records))
        await settled(records)
        after = await chat(d, "erin", "still there?")
    assert after["state"] == "final"
    (escalated,) = payloads(records, "actor:escalated")
    assert isinstance(escalated, SupervisorEscalated)
    assert (escalated.supervisor, escalated.max_restarts) == ("root/sessions", 0)
    (restarted,) = payloads(records, "actor:restarted")
    assert isinstance(restarted, ChildRestarted)
    assert (restarted.supervisor, restarted.child) == ("root", "sessions")
    assert names(records).index("actor:escalated") < names(records).index("actor:restarted")
