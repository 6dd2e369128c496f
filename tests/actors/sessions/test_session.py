"""Session actors in a real tree: turns, queueing, passivation, commands, compaction, crashes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.errors import InvalidSessionKey
from actors.events import (
    MODEL_SELECT,
    SESSION_COMPACTED,
    SESSION_CREATED,
    SESSION_RESET,
    SESSION_UPDATED,
)
from actors.sessions.messages import session_actor_name
from actors.sessions.runner import EmbeddedRunner
from actors.sessions.store import FlushIndex
from tests.actors.harness import Daemon, daemon, io_clock

KEY = "main:ws:alice"


def config(
    *,
    after_turns: int = 40,
    keep_turns: int = 10,
    idle_s: float = 600,
    word_delay_s: float = 0,
    queue_limit: int = 16,
    extra: str = "",
) -> str:
    return f"""
[providers.local]
kind = "echo"
word_delay_s = {word_delay_s}
[providers.flaky]
kind = "faulty"
wraps = "local"
schedule = "fail 1 with context_overflow then ok"
[providers.slow]
kind = "faulty"
wraps = "local"
schedule = "fail forever with slow_first_token delay_s=50"
[providers.slow.timeouts]
first_token_s = 100
[providers.broken]
kind = "faulty"
wraps = "local"
schedule = "fail forever with server_error"
[models]
primary = "local/echo"
[sessions]
idle_s = {idle_s}
queue_limit = {queue_limit}
[agent.compaction]
after_turns = {after_turns}
keep_turns = {keep_turns}
idle_s = {idle_s / 2}
{extra}
"""


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


def transcript(state: Path, session_id: str) -> list[dict[str, Any]]:
    path = state / "sessions" / f"{session_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def turn(d: Daemon, text: str, key: str = KEY, **kwargs: Any) -> Any:
    return await d.sessions.turn(key, text, channel="ws", **kwargs)


async def watch(d: Daemon, *events: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    for event in events:

        async def record(payload: Any, name: str = event.name) -> None:
            seen.append((name, payload))

        d.system.hooks.observe(event, record)
    return seen


async def test_a_turn_streams_and_is_persisted(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d:
        seen = await watch(d, SESSION_CREATED, SESSION_UPDATED)
        deltas: list[str] = []

        async def on_delta(text: str) -> None:
            deltas.append(text)

        result = await turn(d, "hello there", on_delta=on_delta, run_id="run-1")
        await d.system.registry.lookup("store").ask(FlushIndex(), 5)
        await trio.sleep(0.1)
        entry = (await d.sessions.list())[0]
    assert (result.state, result.text, result.model) == ("final", "echo: hello there", "local/echo")
    assert "".join(deltas) == "echo: hello there" and len(deltas) == 3
    records = transcript(tmp_path, entry.session_id)
    assert [r["type"] for r in records] == ["session", "message", "message"]
    assert (records[1]["role"], records[1]["content"], records[1]["run_id"]) == (
        "user",
        "hello there",
        "run-1",
    )
    assert (records[2]["role"], records[2]["content"], records[2]["model"]) == (
        "assistant",
        "echo: hello there",
        "local/echo",
    )
    assert (entry.key, entry.turns, entry.last_model, entry.channel) == (KEY, 1, "local/echo", "ws")
    assert [name for name, _ in seen] == ["session:created", "session:updated"]
    assert seen[1][1].turns == 1 and seen[1][1].run_id == "run-1"


async def test_turns_of_one_session_run_one_at_a_time(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(word_delay_s=1), tmp_path) as d:
        log: list[str] = []

        async def one(n: int) -> None:
            async def on_delta(text: str) -> None:
                log.append(f"{n}")

            result = await turn(d, f"message {n}", on_delta=on_delta)
            log.append(f"done {n}")
            assert result.text == f"echo: message {n}"

        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(one, n)
                await trio.sleep(0.01)  # they arrive in this order
        other = await turn(d, "meanwhile", key="main:ws:bob")
    assert log == ["0"] * 3 + ["done 0"] + ["1"] * 3 + ["done 1"] + ["2"] * 3 + ["done 2"]
    assert other.state == "final"


async def test_a_full_queue_answers_busy(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(word_delay_s=1, queue_limit=2), tmp_path) as d:
        results: list[Any] = []

        async def one(n: int) -> None:
            results.append(await turn(d, f"message {n}"))

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(one, n)
                await trio.sleep(0.01)
    states = sorted((r.state, r.error_code) for r in results)
    assert states == [
        ("error", "busy"),
        ("error", "busy"),
        ("final", None),
        ("final", None),
        ("final", None),
    ]


async def test_an_idle_session_passivates_and_is_restored_from_disk(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(idle_s=60), tmp_path) as d:
        await turn(d, "first")
        await turn(d, "second")
        assert d.sessions.active() == 1
        await trio.sleep(61)
        assert d.sessions.active() == 0
        assert d.system.registry.get(session_actor_name(KEY)) is None
        status = await turn(d, "/status")
        history = await d.sessions.history(KEY)
    assert "turns: 2" in status.text
    assert [r["content"] for r in history] == ["first", "echo: first", "second", "echo: second"]


async def test_the_embedded_runner_builds_the_prompt(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    from actors.config import AgentConfig
    from actors.sessions.transcript import History, Turn

    runner = EmbeddedRunner(AgentConfig(system_prompt="Be kind.", history_turns=2), None)  # type: ignore[arg-type]
    history = History(
        summary="They met.",
        through_turn=3,
        turns=[Turn(4, "u4", "a4"), Turn(5, "u5", "a5"), Turn(6, "u6", "a6")],
    )
    request = runner.build_request(
        history, "now?", session_key=KEY, session_pin="p/m", channel="ws", channel_pin=None
    )
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be kind."),
        ("system", "Summary of the earlier conversation:\nThey met."),
        ("user", "u5"),
        ("assistant", "a5"),
        ("user", "u6"),
        ("assistant", "a6"),
        ("user", "now?"),
    ]
    assert (request.session_key, request.session_pin, request.channel) == (KEY, "p/m", "ws")


# -- commands -----------------------------------------------------------------------------


async def test_model_pins_shows_and_unpins(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(), tmp_path) as d:
        assert "Default: local/echo" in (await turn(d, "/model")).text
        assert (
            await turn(d, "/model local/pinned")
        ).text == "Pinned local/pinned for this session."
        assert (await turn(d, "hi")).model == "local/pinned"
        assert "Pinned: local/pinned" in (await turn(d, "/model")).text
        refused = await turn(d, "/model nowhere/x")
        assert "no provider 'nowhere'" in refused.text and refused.state == "final"
        assert "not a model name" in (await turn(d, "/model nameless")).text
        assert "Unpinned" in (await turn(d, "/model default")).text
        assert (await turn(d, "hi")).model == "local/echo"


async def test_status_help_and_unknown_commands(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(), tmp_path) as d:
        await turn(d, "hello world")
        status = await turn(d, "/status")
        assert status.command == "status" and status.model is None
        for line in ("model: local/echo (default)", "turns: 1", "tokens ≈ ", "last failover: none"):
            assert line in status.text
        assert "/compact" in (await turn(d, "/help")).text
        assert (await turn(d, "/frobnicate")).text.startswith("Unknown command /frobnicate.")
        assert (await turn(d, "/ not a command")).text == "echo: / not a command"


@pytest.mark.parametrize("command", ["/new", "/reset"])
async def test_new_and_reset_start_a_new_transcript(
    clock: trio.testing.MockClock, tmp_path: Path, command: str
) -> None:
    async with daemon(config(), tmp_path) as d:
        seen = await watch(d, SESSION_RESET)
        await turn(d, "remember me")
        old = (await d.sessions.info(KEY)).session_id
        reply = await turn(d, command)
        info = await d.sessions.info(KEY)
        await trio.sleep(0.1)
    assert "New session started" in reply.text
    assert info.session_id != old and info.turns == 0
    assert (tmp_path / "sessions" / f"{old}.jsonl").exists()  # the old transcript is kept
    ((_, payload),) = seen
    assert (payload.old_session_id, payload.new_session_id) == (old, info.session_id)


# -- compaction ---------------------------------------------------------------------------


async def route_summaries_to(d: Daemon, model: str) -> None:
    async def reroute(p: Any) -> Any:
        if p.session_key is None:  # the summary request, not a turn
            return dataclasses.replace(p, chain=(model,))
        return None

    d.system.hooks.intercept(MODEL_SELECT, reroute)


async def test_compaction_runs_in_the_background(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(after_turns=3, keep_turns=1), tmp_path) as d:
        seen = await watch(d, SESSION_COMPACTED)
        await route_summaries_to(d, "slow/summarizer")  # 50 s before its first token
        for n in range(3):
            await turn(d, f"turn {n}")
        began = trio.current_time()
        fourth = await turn(d, "turn 3")  # while the summary is being written
        assert fourth.state == "final" and trio.current_time() - began < 5
        assert "(one running)" in (await turn(d, "/status")).text
        assert (await turn(d, "/compact")).text == "A compaction is already running."
        await trio.sleep(60)
        info = await d.sessions.info(KEY)
    records = transcript(tmp_path, info.session_id)
    (compaction,) = [r for r in records if r["type"] == "compaction"]
    assert compaction["through_turn"] == 2 and compaction["kept_turns"] == 1
    assert compaction["summary"].startswith("echo: Conversation to summarize:")
    assert "User: turn 0" in compaction["summary"] and "User: turn 2" not in compaction["summary"]
    assert info.compactions == 1
    ((_, payload),) = seen
    assert (payload.through_turn, payload.kept_turns) == (2, 1)


async def test_a_failed_compaction_leaves_the_history_intact(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(after_turns=3, keep_turns=1), tmp_path) as d:
        await route_summaries_to(d, "broken/summarizer")
        for n in range(4):
            assert (await turn(d, f"turn {n}")).state == "final"
        await trio.sleep(10)
        failed = await turn(d, "/compact")
        info = await d.sessions.info(KEY)
        history = await d.sessions.history(KEY)
    assert failed.text.startswith("Compaction failed (") and "history is unchanged" in failed.text
    assert info.compactions == 0 and info.turns == 4
    assert len(history) == 8
    assert not [r for r in transcript(tmp_path, info.session_id) if r["type"] == "compaction"]


async def test_a_context_overflow_compacts_and_retries_once(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(config(after_turns=40, keep_turns=1), tmp_path) as d:
        for n in range(3):
            await turn(d, f"turn {n}")
        await turn(d, "/model flaky/big")  # its first answer is a context overflow
        result = await turn(d, "one more")
        info = await d.sessions.info(KEY)
    assert result.state == "final" and result.text == "echo: one more"
    records = transcript(tmp_path, info.session_id)
    assert [r["type"] for r in records][-3:] == ["message", "compaction", "message"]
    assert info.compactions == 1


# -- failures --------------------------------------------------------------------------------


async def test_a_crash_mid_turn_is_an_error_and_the_session_comes_back_from_disk(
    clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = EmbeddedRunner.answer
    crashes = []

    async def crash_once(self: EmbeddedRunner, request: Any, on_delta: Any) -> Any:
        if request.messages[-1].content == "crash here" and not crashes:
            crashes.append(1)
            await on_delta("partial ")
            raise RuntimeError("the runner fell over")
        return await original(self, request, on_delta)

    monkeypatch.setattr(EmbeddedRunner, "answer", crash_once)
    async with daemon(config(), tmp_path) as d:
        await turn(d, "before")
        crashed = await turn(d, "crash here")
        after = await turn(d, "after")
        info = await d.sessions.info(KEY)
        history = await d.sessions.history(KEY)
    assert (crashed.state, crashed.error_code) == ("error", "session_crashed")
    assert "the runner fell over" in (crashed.error or "")
    assert after.state == "final"
    assert info.turns == 2  # the crashed turn has no answer
    assert [r["content"] for r in history] == [
        "before",
        "echo: before",
        "crash here",
        "after",
        "echo: after",
    ]


async def test_an_aborted_turn_is_recorded(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(word_delay_s=1), tmp_path) as d:
        scope = trio.CancelScope()
        got: list[str] = []

        async def on_delta(text: str) -> None:
            got.append(text)
            if len(got) == 2:
                scope.cancel()

        result = await turn(d, "a long answer please", on_delta=on_delta, scope=scope)
        info = await d.sessions.info(KEY)
    assert result.state == "aborted" and result.text == "echo: a"
    records = transcript(tmp_path, info.session_id)
    assert records[-1]["type"] == "aborted" and records[-1]["partial"] == "echo: a"
    assert info.turns == 0


async def test_a_malformed_key_is_refused(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(config(), tmp_path) as d:
        for bad in ("alice", "main:ws", "main:ws:has space", "a:b:c:d:e", "main::x"):
            with pytest.raises(InvalidSessionKey, match="expected <agent>:<channel>"):
                await turn(d, "hi", key=bad)
        assert (await turn(d, "hi", key="main:telegram:dm:12345")).state == "final"
