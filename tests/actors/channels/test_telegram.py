"""The Telegram channel through a real daemon, against a fake Bot API on loopback.

Each test starts the daemon's tree (`daemon()` from the harness, channels
included) and a `FakeTelegram` in the same trio run, on a MockClock that only
jumps when no loopback I/O is in flight. The echo provider answers
`echo: <text>`; a faulty one fails on purpose.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.channels.telegram import (
    MAX_MESSAGE_CHARS,
    REFUSAL,
    error_reply,
    split_message,
    utf16_len,
)
from actors.events import MESSAGE_RECEIVED, MESSAGE_SENT, MessageReceived, MessageSent
from actors.sessions.messages import TurnResult
from tests.actors.channels.fake_telegram import FakeTelegram
from tests.actors.harness import Daemon, daemon, io_clock

TOKEN = "123456:TEST-secret-token"
TOKEN_ENV = "TEST_TG_TOKEN"


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


@pytest.fixture
async def fake(clock: trio.testing.MockClock) -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(token=TOKEN)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def config(
    url: str,
    *,
    dm_policy: str = "open",
    allow_from: str = "[]",
    primary: str = "local/echo",
    word_delay_s: float = 0,
    poll_timeout_s: int = 20,
    stall_s: float = 60,
) -> str:
    return f"""
[providers.local]
kind = "echo"
word_delay_s = {word_delay_s}
[providers.broken]
kind = "faulty"
wraps = "local"
schedule = "fail forever with server_error"
[models]
primary = "{primary}"
[channels.telegram]
enabled = true
token_env = "{TOKEN_ENV}"
api_base = "{url}"
dm_policy = "{dm_policy}"
allow_from = {allow_from}
poll_timeout_s = {poll_timeout_s}
stall_s = {stall_s}
typing_interval_s = 1
request_timeout_s = 5
retries = 3
"""


@asynccontextmanager
async def tg_daemon(
    fake: FakeTelegram,
    state: Path,
    *,
    token: str = TOKEN,
    **options: Any,
) -> AsyncIterator[Daemon]:
    """A daemon with the Telegram channel on `fake` (the token in the daemon's env)."""
    async with daemon(config(fake.url, **options), state, env={TOKEN_ENV: token}) as d:
        yield d


def saved_offset(state: Path) -> int:
    data = json.loads((state / "telegram" / "offset.json").read_text())
    assert isinstance(data["offset"], int)
    return data["offset"]


async def settle(seconds: float = 5.0) -> None:
    """Let virtual time pass (nothing should happen in it)."""
    await trio.sleep(seconds)


# -- a DM ---------------------------------------------------------------------------------------


async def test_a_dm_is_answered_with_typing_while_the_turn_runs(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path, word_delay_s=0.5) as d:
        events: list[tuple[str, Any]] = []

        async def received(payload: MessageReceived) -> None:
            events.append((MESSAGE_RECEIVED.name, payload))

        async def sent(payload: MessageSent) -> None:
            events.append((MESSAGE_SENT.name, payload))

        d.system.hooks.observe(MESSAGE_RECEIVED, received)
        d.system.hooks.observe(MESSAGE_SENT, sent)
        update_id = fake.push_text(42, "hello there bot", username="alice")
        await fake.wait_for(lambda: len(fake.sent) == 1)
        await fake.wait_for(lambda: fake.offsets[-1] == update_id + 1)
        keys = [entry.key for entry in await d.sessions.list()]
        counters = dict(d.gateway.counters)
        assert d.gateway.addresses["telegram"] == fake.url
        await trio.sleep(0.1)  # the hook bus delivers observers asynchronously
    reply = fake.sent[0]
    assert (reply["chat_id"], reply["text"]) == (42, "echo: hello there bot")
    assert reply["reply_parameters"]["allow_sending_without_reply"] is True
    assert keys == ["main:telegram:dm:42"]
    (received_name, received_event), (sent_name, sent_event) = events
    assert (received_name, received_event.channel) == ("message:received", "telegram")
    assert (received_event.session_key, received_event.text, received_event.sender) == (
        "main:telegram:dm:42",
        "hello there bot",
        "42",
    )
    assert (sent_name, sent_event.text) == ("message:sent", "echo: hello there bot")
    # The turn streams 4 words 0.5 s apart: "typing" was shown, every second, before the reply.
    typing = fake.calls_of("sendChatAction")
    replied_at = fake.calls_of("sendMessage")[0].at
    assert len(typing) >= 2
    assert all(c.body == {"chat_id": 42, "action": "typing"} for c in typing)
    assert all(c.at <= replied_at for c in typing)
    assert saved_offset(tmp_path) == update_id + 1
    assert counters["telegram_updates"] == 1 and counters["telegram_replies"] == 1
    assert counters["runs_final"] == 1
    # Every poll asked for messages only, with a long-poll timeout.
    polls = fake.calls_of("getUpdates")
    assert all(c.body["allowed_updates"] == ["message"] for c in polls)
    assert all(c.body["timeout"] == 20 for c in polls)


async def test_chat_commands_are_answered(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path):
        fake.push_text(7, "hi")
        fake.push_text(7, "/status")
        fake.push_text(7, "/help@fake_bot")
        await fake.wait_for(lambda: len(fake.sent) == 3)
    hi, status, help_ = fake.texts(7)
    assert hi == "echo: hi"
    assert "model: local/echo" in status and "turns: 1" in status
    assert help_.startswith("Commands:") and "/status" in help_


async def test_an_error_result_gets_a_short_apology(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path, primary="broken/echo"):
        fake.push_text(8, "are you there?")
        await fake.wait_for(lambda: len(fake.sent) == 1)
    text = fake.texts(8)[0]
    assert text.startswith("Sorry — I could not answer that (server_error")
    assert len(text) < 400


def test_error_reply_wording() -> None:
    result = TurnResult(
        run_id="r",
        state="error",
        error_code="overloaded",
        error="the models are unavailable right now",
        retryable=True,
    )
    assert error_reply(result) == (
        "Sorry — I could not answer that "
        "(overloaded: the models are unavailable right now). Please try again."
    )
    long = result.model_copy(update={"error": "x" * 1000, "retryable": False})
    assert len(error_reply(long)) < 400 and not error_reply(long).endswith("again.")


# -- offsets ------------------------------------------------------------------------------------


async def test_the_offset_survives_a_restart_without_losing_or_repeating(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path):
        fake.push_text(1, "first")
        second = fake.push_text(1, "second")
        await fake.wait_for(lambda: len(fake.sent) == 2)
        await fake.wait_for(lambda: fake.offsets[-1] == second + 1)
    assert saved_offset(tmp_path) == second + 1
    # While the daemon is down: two more messages, and Telegram forgets the
    # confirmations (as if the daemon had died before its next getUpdates).
    third = fake.push_text(1, "third")
    fourth = fake.push_text(2, "fourth")
    fake.forget_confirmations()
    assert fake.pending()[:2] == [second - 1, second]
    polls_before = fake.get_updates_calls
    async with tg_daemon(fake, tmp_path):
        await fake.wait_for(lambda: len(fake.sent) == 4)
        await fake.wait_for(lambda: fake.offsets[-1] == fourth + 1)
        await settle()
    assert fake.offsets[polls_before] == second + 1  # the first poll after the restart
    assert fake.texts() == ["echo: first", "echo: second", "echo: third", "echo: fourth"]
    assert saved_offset(tmp_path) == fourth + 1
    assert third == second + 1


async def test_an_unreadable_offset_file_falls_back_to_telegrams_default(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    (tmp_path / "telegram").mkdir()
    (tmp_path / "telegram" / "offset.json").write_text("{not json")
    async with tg_daemon(fake, tmp_path):
        update_id = fake.push_text(3, "still here")
        await fake.wait_for(lambda: len(fake.sent) == 1)
    assert fake.offsets[0] is None
    assert saved_offset(tmp_path) == update_id + 1
    assert (tmp_path / "telegram" / "offset.json.corrupt").exists()


# -- who is answered ----------------------------------------------------------------------------


async def test_the_allowlist_admits_ids_and_usernames_and_refuses_others_once(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    options: dict[str, Any] = {"dm_policy": "allowlist", "allow_from": '[111, "@Bob"]'}
    async with tg_daemon(fake, tmp_path, **options) as d:
        fake.push_text(111, "from alice", username="alice")  # by id
        fake.push_text(222, "from bob", username="bob")  # by @username, any case
        fake.push_text(333, "from carol", username="carol")
        fake.push_text(333, "carol again", username="carol")
        fake.push_text(444, "no username")
        last = fake.push_text(111, "done", username="alice")
        await fake.wait_for(lambda: fake.offsets[-1] == last + 1)
        keys = sorted(entry.key for entry in await d.sessions.list())
    assert fake.texts(111) == ["echo: from alice", "echo: done"]
    assert fake.texts(222) == ["echo: from bob"]
    assert fake.texts(333) == [REFUSAL.format(user_id=333)]  # once, then silence
    assert fake.texts(444) == [REFUSAL.format(user_id=444)]
    assert keys == ["main:telegram:dm:111", "main:telegram:dm:222"]
    assert saved_offset(tmp_path) == last + 1


async def test_open_answers_everyone(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path, dm_policy="open"):
        fake.push_text(5001, "one")
        fake.push_text(5002, "two", username="someone")
        await fake.wait_for(lambda: len(fake.sent) == 2)
    assert (fake.texts(5001), fake.texts(5002)) == (["echo: one"], ["echo: two"])


async def test_disabled_answers_nobody_but_advances_the_offset(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path, dm_policy="disabled") as d:
        fake.push_text(9, "hello?")
        last = fake.push_text(9, "anyone?")
        await fake.wait_for(lambda: fake.offsets[-1] == last + 1)
        assert await d.sessions.list() == []
    assert fake.sent == [] and fake.actions == []
    assert saved_offset(tmp_path) == last + 1


async def test_only_private_text_messages_are_handled(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path) as d:
        fake.push_text(-100123, "in a group", user_id=5, chat_type="group")
        fake.push_text(-100456, "in a supergroup", user_id=5, chat_type="supergroup")
        fake.push_update(
            {"channel_post": fake.message(-100789, text="a post", chat_type="channel")}
        )
        fake.push_update({"message": fake.message(5, sticker={"file_id": "x", "emoji": "👍"})})
        fake.push_update({"edited_message": fake.message(5, text="edited")})
        last = fake.push_text(5, "a real DM")
        await fake.wait_for(lambda: fake.offsets[-1] == last + 1)
        keys = [entry.key for entry in await d.sessions.list()]
        skipped = d.gateway.counters["telegram_skipped"]
    assert fake.texts() == ["echo: a real DM"]
    assert keys == ["main:telegram:dm:5"]
    assert skipped == 5


# -- long replies -------------------------------------------------------------------------------


def paragraph(tag: str, chars: int) -> str:
    words = (f"{tag}-lorem ipsum dolor " * chars)[:chars]
    return words[:-1] + "."


async def test_a_long_reply_is_split_at_paragraphs_then_lines(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    paragraphs = [paragraph(f"p{i}", 1499) for i in range(5)]
    lines = [f"{i:02d} " + "y" * 96 for i in range(60)]  # no blank line: one paragraph
    async with tg_daemon(fake, tmp_path):
        fake.push_text(11, "\n\n".join(paragraphs))
        await fake.wait_for(lambda: len(fake.sent) == 3)
        fake.push_text(12, "\n".join(lines))
        await fake.wait_for(lambda: len(fake.sent) == 5)
    by_paragraph = fake.texts(11)
    assert by_paragraph == [
        "echo: " + paragraphs[0] + "\n\n" + paragraphs[1],
        paragraphs[2] + "\n\n" + paragraphs[3],
        paragraphs[4],
    ]
    by_line = fake.texts(12)
    assert by_line == ["echo: " + "\n".join(lines[:40]), "\n".join(lines[40:])]
    assert all(utf16_len(part) <= MAX_MESSAGE_CHARS for part in by_paragraph + by_line)
    # Only the first part quotes the user's message.
    parts = [m for m in fake.sent if m["chat_id"] == 11]
    assert "reply_parameters" in parts[0] and "reply_parameters" not in parts[1]


def test_split_message_boundaries() -> None:
    assert split_message("short") == ["short"]
    assert split_message("") == [] and split_message(" \n\n ") == []
    assert split_message("aaaa\n\nbb\ncc dd", 9) == ["aaaa", "bb\ncc dd"]
    assert split_message("aaaa bbbb\ncccc", 9) == ["aaaa bbbb", "cccc"]
    assert split_message("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]
    assert split_message("abcdefghijkl", 5) == ["abcde", "fghij", "kl"]
    # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice, and is never cut.
    emoji = "😀" * 5
    assert split_message(emoji, 4) == ["😀😀", "😀😀", "😀"]
    text = ("word " * 5000).strip()
    parts = split_message(text)
    assert all(utf16_len(p) <= MAX_MESSAGE_CHARS for p in parts)
    assert " ".join(parts) == text


# -- Bot API failures ---------------------------------------------------------------------------


async def test_429_waits_retry_after_then_delivers(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail_next("sendMessage", 429, retry_after=7)
    fake.fail_next("sendMessage", 502)
    async with tg_daemon(fake, tmp_path):
        fake.push_text(21, "rate me")
        await fake.wait_for(lambda: len(fake.sent) == 1)
    calls = fake.calls_of("sendMessage")
    assert [c.status for c in calls] == [429, 502, 200]
    assert calls[1].at - calls[0].at >= 7  # retry_after honoured, on trio's clock
    assert calls[2].at > calls[1].at
    assert fake.texts(21) == ["echo: rate me"]
    assert "Too Many Requests" in caplog.text
    assert TOKEN not in caplog.text  # httpx's own request lines are redacted too
    assert "/bot<token>/sendMessage" in caplog.text


async def test_other_4xx_is_not_retried_and_is_logged(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    fake.fail_next("sendMessage", 400, description="Bad Request: chat not found")
    async with tg_daemon(fake, tmp_path) as d:
        first = fake.push_text(31, "lost reply")
        fake.push_text(31, "next one")
        await fake.wait_for(lambda: len(fake.sent) == 1)
        failures = d.gateway.counters["telegram_send_failures"]
    assert [c.status for c in fake.calls_of("sendMessage")] == [400, 200]
    assert fake.texts(31) == ["echo: next one"]
    assert failures == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("sendMessage" in m and "chat not found" in m for m in errors)
    assert saved_offset(tmp_path) > first


async def test_network_blips_are_retried_in_place(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    fake.drop_next("getUpdates")
    fake.drop_next("sendMessage")
    async with tg_daemon(fake, tmp_path) as d:
        fake.push_text(71, "through the blips")
        await fake.wait_for(lambda: len(fake.sent) == 1)
        counters = dict(d.gateway.counters)
    assert [c.status for c in fake.calls_of("sendMessage")] == [0, 200]
    assert fake.calls_of("getUpdates")[0].status == 0
    assert fake.texts(71) == ["echo: through the blips"]
    assert counters.get("telegram_poll_errors", 0) == 0
    assert counters.get("telegram_send_failures", 0) == 0


async def test_a_429_on_getupdates_is_waited_out_without_tripping_the_watchdog(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    fake.fail_next("getUpdates", 429, retry_after=8)
    async with tg_daemon(fake, tmp_path, poll_timeout_s=2, stall_s=5) as d:
        await fake.wait_for(lambda: fake.get_updates_calls >= 4)  # quiet polls: no restart
        restarts = d.gateway.counters["telegram_poll_restarts"]
        fake.push_text(81, "patience")
        await fake.wait_for(lambda: len(fake.sent) == 1)
    limited, retried = fake.calls_of("getUpdates")[:2]
    assert limited.status == 429 and retried.at - limited.at >= 8
    assert restarts == 0  # waiting out retry_after is not a stall
    assert fake.texts(81) == ["echo: patience"]


async def test_a_wrong_token_is_logged_without_the_token_and_polling_goes_on(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "999:WRONG-secret"
    async with tg_daemon(fake, tmp_path, token=wrong) as d:
        await fake.wait_for(lambda: len(fake.calls_of("getUpdates")) >= 3)
        errors = d.gateway.counters["telegram_poll_errors"]
    assert all(c.status == 401 for c in fake.calls_of("getUpdates"))
    assert errors >= 2
    assert "getUpdates (401): Unauthorized" in caplog.text
    assert wrong not in caplog.text


async def test_a_missing_token_fails_the_start_naming_the_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    clock: trio.testing.MockClock,
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.RaisesGroup(RuntimeError, flatten_subgroups=True):
        async with daemon(config("http://127.0.0.1:9"), tmp_path):
            pass
    assert f"${TOKEN_ENV} is not set" in caplog.text


async def test_a_bad_api_base_fails_the_start_without_showing_the_token(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    clock: trio.testing.MockClock,
) -> None:
    with pytest.RaisesGroup(RuntimeError, flatten_subgroups=True):
        async with daemon(config("api.telegram.org"), tmp_path, {TOKEN_ENV: TOKEN}):
            pass
    assert "must be an http:// or https:// URL" in caplog.text
    assert TOKEN not in caplog.text


async def test_the_stall_watchdog_restarts_polling(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.stall_next_poll()
    async with tg_daemon(fake, tmp_path, poll_timeout_s=2, stall_s=5) as d:
        await fake.wait_for(lambda: fake.get_updates_calls >= 4)  # then quiet polls go on
        restarts = d.gateway.counters["telegram_poll_restarts"]
        fake.push_text(41, "after the stall")
        await fake.wait_for(lambda: len(fake.sent) == 1)
        await fake.wait_for(lambda: fake.polls_in_flight == 1)  # the stalled one was closed
    stalled, fresh = fake.calls_of("getUpdates")[:2]
    assert restarts == 1
    assert 5 <= fresh.at - stalled.at < 12  # the watchdog, not the 12 s read budget
    assert fake.texts(41) == ["echo: after the stall"]
    assert "restarting polling" in caplog.text


# -- stopping -----------------------------------------------------------------------------------


async def test_a_graceful_stop_finishes_the_update_in_hand_and_stops_polling(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path, word_delay_s=1) as d:
        first = fake.push_text(51, "one two three four")
        batched = fake.push_text(52, "in the same batch")  # fetched with `first`
        await fake.wait_for(lambda: len(fake.actions) >= 1)  # the turn of `first` is running
        later = fake.push_text(53, "arrives during the stop")
        polls = fake.get_updates_calls
        d.system.request_stop("test: graceful stop")
        await fake.wait_for(lambda: len(fake.sent) == 1)
        await settle(30)
        assert fake.get_updates_calls == polls  # no new poll once intake stopped
    assert fake.texts() == ["echo: one two three four"]
    assert saved_offset(tmp_path) == first + 1
    # No poll confirmed anything since: Telegram still holds all three. The next daemon
    # starts from its saved offset, so `first` is not repeated and the others are answered.
    assert fake.pending() == [first, batched, later]
    polls = fake.get_updates_calls
    async with tg_daemon(fake, tmp_path):
        await fake.wait_for(lambda: len(fake.sent) == 3)
        await fake.wait_for(lambda: fake.offsets[-1] == later + 1)
        await settle()
    assert fake.offsets[polls] == first + 1
    assert fake.texts() == [
        "echo: one two three four",
        "echo: in the same batch",
        "echo: arrives during the stop",
    ]


async def test_a_stop_while_idle_cancels_the_poll_in_flight(
    clock: trio.testing.MockClock,
    fake: FakeTelegram,
    tmp_path: Path,
) -> None:
    async with tg_daemon(fake, tmp_path) as d:
        await fake.wait_for(lambda: fake.polls_in_flight == 1)
        polls = fake.get_updates_calls
        # The poll in flight is cancelled at once: the stop takes neither the 20 s
        # long poll nor the channel's 5 s stop budget.
        with trio.fail_after(1):
            d.system.request_stop("test: idle stop")
            while d.system.phase is None or d.system.phase.value != "close_resources":
                await trio.sleep(0.05)
        fake.push_text(61, "too late")
        await settle()
    assert fake.get_updates_calls == polls
    assert fake.sent == []
