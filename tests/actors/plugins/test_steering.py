"""Plugins that steer, through a real daemon: rewrite, cancel, veto, redirect,
replace the chain; and plugins that fail or hang, held to their timeouts.

The plugin is `tests.actors.plugins.steer`, loaded from `[hooks] plugins`;
its `[hooks.plugin."tests.actors.plugins.steer"]` table picks its behaviour.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from actors.channels.client import GatewayClient
from tests.actors.harness import Daemon, daemon, io_clock
from tests.actors.plugins.configs import ECHO, FLAKY
from tests.actors.plugins.recorder import RECORDS
from tests.actors.plugins.steer import CALLS

STEER = "tests.actors.plugins.steer"


def steer(options: dict[str, Any], *, settings: str = "", recorder: bool = False) -> str:
    plugins = [STEER, "tests.actors.plugins.recorder"] if recorder else [STEER]
    return (
        f"[hooks]\nplugins = {json.dumps(plugins)}\ntimeout_s = 5\n"
        f'[hooks.plugin."{STEER}"]\noptions = {_inline(options)}\n{settings}\n'
    )


def _inline(options: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + "}"


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


async def chat(d: Daemon, session: str, text: str) -> dict[str, Any]:
    async with GatewayClient.connect(d.gateway.addresses["websocket"]) as client:
        return await client.chat(session, text)


async def test_message_sending_may_rewrite_the_reply_on_every_channel(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(steer({"sending": "rewrite"}) + ECHO, tmp_path) as d:
        answer = await chat(d, "alice", "hello")
        async with httpx.AsyncClient(base_url=d.gateway.addresses["http"]) as http:
            response = await http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "over http"}]},
            )
        history = await d.sessions.history("main:ws:alice")
    assert (answer["state"], answer["text"]) == ("final", "ECHO: HELLO")
    assert response.json()["choices"][0]["message"]["content"] == "ECHO: OVER HTTP"
    # The transcript keeps what the model said; the rewrite is what was sent.
    assert history[-1]["content"] == "echo: hello"
    assert CALLS[str(tmp_path)]["sending"] == 2


async def test_message_sending_may_cancel_the_reply(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(steer({"sending": "veto"}, recorder=True) + ECHO, tmp_path) as d:
        answer = await chat(d, "bob", "hello")
        async with httpx.AsyncClient(base_url=d.gateway.addresses["http"]) as http:
            response = await http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
        await trio.sleep(1)
    assert answer["state"] == "error"
    assert answer["error"]["code"] == "cancelled"
    assert "not today" in answer["error"]["message"]
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cancelled"
    # A cancelled reply is not sent: no message:sent.
    names = [name for name, _ in RECORDS[str(tmp_path)]]
    assert names.count("message:sending") == 0  # observers see only what the chain let through
    assert names.count("message:sent") == 0


async def test_a_hanging_interceptor_costs_its_timeout_and_fails_open_by_default(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    settings = "timeout_s = 2\n"
    async with daemon(steer({"sending": "hang"}, settings=settings) + ECHO, tmp_path) as d:
        began = trio.current_time()
        answer = await chat(d, "carol", "hello")
        waited = trio.current_time() - began
        stats = d.system.hooks.stats()
    assert (answer["state"], answer["text"]) == ("final", "echo: hello")
    assert 2 <= waited < 3  # the plugin's own timeout, not [hooks] timeout_s = 5
    assert stats["interceptor_timeouts"] == 1


async def test_fail_closed_from_the_config_turns_a_failure_into_a_veto(
    clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = "fail_open = false\n"
    async with daemon(steer({"sending": "raise"}, settings=settings) + ECHO, tmp_path) as d:
        answer = await chat(d, "dave", "hello")
    assert answer["state"] == "error"
    assert answer["error"]["code"] == "cancelled"
    assert "fail_closed interceptor raised PluginFault" in answer["error"]["message"]
    assert "the sending interceptor fell over" in caplog.text  # logged with its traceback


async def test_a_raising_interceptor_that_fails_open_leaves_the_reply_alone(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(steer({"sending": "raise"}) + ECHO, tmp_path) as d:
        answer = await chat(d, "erin", "hello")
        stats = d.system.hooks.stats()
    assert (answer["state"], answer["text"]) == ("final", "echo: hello")
    assert stats["interceptor_errors"] == 1


async def test_a_failing_or_hanging_observer_never_holds_or_breaks_a_turn(
    clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callboard.runtime.hooks")
    for behaviour in ("hang", "raise"):
        state = tmp_path / behaviour
        async with daemon(steer({"observer": behaviour}) + ECHO, state) as d:
            began = trio.current_time()
            answer = await chat(d, "frank", "hello")
            took = trio.current_time() - began
            await trio.sleep(6)  # past the observer's timeout
            stats = d.system.hooks.stats()
        assert (answer["state"], answer["text"]) == ("final", "echo: hello")
        assert took < 1  # the turn did not wait for the observer
        assert CALLS[str(state)]["observer"] == 1
        key = "observer_timeouts" if behaviour == "hang" else "observer_errors"
        assert stats[key] == 1
    assert "timed out after 5 s" in caplog.text


async def test_a_hanging_observer_does_not_hold_the_stop_past_its_timeout(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    settings = "timeout_s = 30\n"
    began = trio.current_time()
    async with daemon(steer({"observer": "hang"}, settings=settings) + ECHO, tmp_path) as d:
        await chat(d, "gina", "hello")
        stop_from = trio.current_time()
    assert trio.current_time() - stop_from <= 30 + 1
    assert stop_from - began < 1


async def test_model_failover_may_be_vetoed(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with daemon(steer({"failover": "veto"}) + FLAKY, tmp_path) as d:
        answer = await chat(d, "hank", "hello")
    assert answer["state"] == "error"
    assert answer["error"]["code"] == "overloaded"
    assert [a["model"] for a in answer["attempts"]] == ["flaky/main"]
    assert CALLS[str(tmp_path)]["failover"] == 1


async def test_model_failover_may_be_redirected(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(steer({"failover": "redirect:local/elsewhere"}) + FLAKY, tmp_path) as d:
        answer = await chat(d, "ivan", "hello")
    assert (answer["state"], answer["model"]) == ("final", "local/elsewhere")
    assert [a["model"] for a in answer["attempts"]] == ["flaky/main", "local/elsewhere"]


async def test_model_select_may_replace_the_chain(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon(
        steer({"select": "chain:local/chosen"}, recorder=True) + FLAKY, tmp_path
    ) as d:
        answer = await chat(d, "judy", "hello")
        await trio.sleep(1)
    assert (answer["state"], answer["model"]) == ("final", "local/chosen")
    (select,) = [p for name, p in RECORDS[str(tmp_path)] if name == "model:select"]
    assert select.chain == ("local/chosen",)  # observers see the chain that was used
