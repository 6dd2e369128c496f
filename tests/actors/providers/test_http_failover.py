"""Every fault through the real HTTP providers, against the fake provider on loopback.

Each test starts the daemon's tree (provider actors, the failover supervisor)
and a `FakeProvider` in the same trio run, on a MockClock that only jumps when
no loopback I/O is in flight. Assertions: the served model, the attempt trail
and the answer; for keys, the cooldown state on disk and across a restart.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from actors.errors import ErrorClass
from actors.models import Delta
from actors.providers.fake_server import FakeProvider
from tests.actors.harness import Daemon, completed, daemon, failed, io_clock, text_of, trail

ENV = {"OA_KEY_1": "sk-one", "OA_KEY_2": "sk-two", "AN_KEY": "ak-one"}
ANSWER = "Hello from the fake provider. You said: {prompt}"
PROMPT = "tell me something"
FULL = ANSWER.format(prompt=PROMPT)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


@pytest.fixture
async def fake(clock: trio.testing.MockClock) -> AsyncIterator[FakeProvider]:
    server = FakeProvider(answer=ANSWER)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def config(
    port: int,
    *,
    primary: str = "oa/gpt-main",
    fallbacks: str = '["an/claude-backup"]',
    oa_extra: str = "",
    an_extra: str = "",
    extra: str = "",
    oa_port: int | None = None,
) -> str:
    return f"""
[providers.oa]
kind = "openai"
base_url = "http://127.0.0.1:{oa_port or port}/v1"
api_key_env = ["OA_KEY_1", "OA_KEY_2"]
{oa_extra}
[providers.oa.timeouts]
connect_s = 2
first_token_s = 5
idle_s = 3
[providers.an]
kind = "anthropic"
base_url = "http://127.0.0.1:{port}"
api_key_env = "AN_KEY"
{an_extra}
[providers.an.timeouts]
connect_s = 2
first_token_s = 5
idle_s = 3
[models]
primary = "{primary}"
fallbacks = {fallbacks}
[models.failover]
retry_base_s = 0.2
retry_max_s = 1
probe_interval_s = 15
{extra}
"""


async def ask(d: Daemon, **fields: object) -> list[object]:
    return await d.ask(PROMPT, **fields)  # type: ignore[return-value]


# -- answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["oa/gpt-main", "an/claude-backup"])
@pytest.mark.parametrize("stream", [True, False])
async def test_both_wire_formats_answer_streamed_or_whole(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path, model: str, stream: bool
) -> None:
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d, model=model, stream=stream)
    result = completed(events).result  # type: ignore[arg-type]
    assert text_of(events) == FULL == result.text  # type: ignore[arg-type]
    assert result.model == model
    assert result.usage.output_tokens == len(FULL.split())
    assert result.usage.input_tokens == len(PROMPT.split())
    deltas = [e for e in events if isinstance(e, Delta)]
    assert len(deltas) == (len(FULL.split()) if stream else 1)


# -- key-level faults: rotate keys, cool them, persist ---------------------------------------


async def test_429_with_retry_after_is_retried_on_the_same_key(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "fail 1 with rate_limit retry_after=1 then ok"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
    assert text_of(events) == FULL  # type: ignore[arg-type]
    assert trail(events) == [  # type: ignore[arg-type]
        ("oa/gpt-main", "OA_KEY_1", "rate_limit"),
        ("oa/gpt-main", "OA_KEY_1", "ok"),
    ]


async def test_429_without_retry_after_cools_the_key_and_rotates(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_key": {"sk-one": "fail forever with rate_limit"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
        again = await ask(d)
    assert trail(events) == [  # type: ignore[arg-type]
        ("oa/gpt-main", "OA_KEY_1", "rate_limit"),
        ("oa/gpt-main", "OA_KEY_1", "rate_limit"),
        ("oa/gpt-main", "OA_KEY_2", "ok"),
    ]
    assert completed(events).result.model == "oa/gpt-main"  # type: ignore[arg-type]
    # The cooled key is skipped without a hit, and the key that answered sticks.
    assert trail(again) == [("oa/gpt-main", "OA_KEY_2", "ok")]  # type: ignore[arg-type]
    assert fake.stats()["by_key"] == {"sk-one": 2, "sk-two": 2}
    state = json.loads((tmp_path / "auth-state.json").read_text())
    (cooldown,) = state["cooldowns"]
    assert (cooldown["profile"], cooldown["model"], cooldown["reason"]) == (
        "OA_KEY_1",
        "gpt-main",
        "rate_limit",
    )
    assert "sk-one" not in (tmp_path / "auth-state.json").read_text()  # ids, never keys


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("billing", "billing"),
        ("quota", "billing"),
        ("auth", "auth"),
        ("forbidden", "auth_permanent"),
    ],
)
async def test_billing_and_auth_disable_the_key_across_a_restart(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path, fault: str, kind: str
) -> None:
    fake.configure({"per_key": {"sk-one": f"fail forever with {fault}"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
    assert trail(events) == [  # type: ignore[arg-type]
        ("oa/gpt-main", "OA_KEY_1", kind),  # not retried: the key is disabled at once
        ("oa/gpt-main", "OA_KEY_2", "ok"),
    ]
    hits = fake.stats()["by_key"]["sk-one"]
    async with daemon(config(fake.port), tmp_path, ENV) as d:  # a restart
        after = await ask(d)
        # With every key cooling but none usable, the trail says why.
        fake.configure({"per_key": {"sk-one": "ok", "sk-two": f"fail forever with {fault}"}})
        both = await ask(d, fallbacks=())
    assert trail(after) == [("oa/gpt-main", "OA_KEY_2", "ok")]  # type: ignore[arg-type]
    assert fake.stats()["by_key"]["sk-one"] == hits  # the disabled key was not touched again
    assert trail(both) == [  # type: ignore[arg-type]
        ("oa/gpt-main", "OA_KEY_2", kind),
        ("oa/gpt-main", "OA_KEY_1", f"skipped: {kind} cooldown"),
    ]


async def test_all_keys_cooling_moves_to_the_next_model(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "fail forever with billing"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
    assert trail(events) == [  # type: ignore[arg-type]
        ("oa/gpt-main", "OA_KEY_1", "billing"),
        ("oa/gpt-main", "OA_KEY_2", "billing"),
        ("an/claude-backup", "AN_KEY", "ok"),
    ]


# -- route faults ------------------------------------------------------------------------------


async def test_one_500_is_retried_and_a_flapping_provider_still_answers(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "fail 1 with server_error then ok 1 then repeat"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        for _ in range(3):
            events = await ask(d)
            assert completed(events).result.model == "oa/gpt-main"  # type: ignore[arg-type]
            assert [r for _, _, r in trail(events)] == ["server_error", "ok"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("primary", "fallback", "fault", "status"),
    [
        ("oa/gpt-main", "an/claude-backup", "overloaded", 503),
        ("an/claude-main", "oa/gpt-backup", "overloaded", 529),
        ("oa/gpt-main", "an/claude-backup", "unavailable", 503),
    ],
)
async def test_persistent_503_and_529_fail_over(
    clock: trio.testing.MockClock,
    fake: FakeProvider,
    tmp_path: Path,
    primary: str,
    fallback: str,
    fault: str,
    status: int,
) -> None:
    name = primary.split("/")[1]
    fake.configure({"per_model": {name: f"fail forever with {fault}"}})
    async with daemon(
        config(fake.port, primary=primary, fallbacks=f'["{fallback}"]'), tmp_path, ENV
    ) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert result.model == fallback and result.text == FULL
    assert [a.status for a in result.attempts] == [status, status, 200]
    assert {a.reason for a in result.attempts[:2]} == {"overloaded"}


async def test_breaker_probes_during_an_outage(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "fail forever with overloaded"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        for _ in range(20):  # one request every 3 s for a minute
            events = await ask(d)
            assert text_of(events) == FULL  # type: ignore[arg-type]
            await trio.sleep(3)
        primary_hits = fake.stats()["by_model"]["gpt-main"]
        # Opening: each key's first request tries it twice (one retry); then one
        # probe per key per 15 s interval.
        assert primary_hits <= 2 * 2 + 2 * (60 // 15)
        fake.configure({"per_model": {"gpt-main": "ok"}})
        await trio.sleep(15)
        healed = await ask(d)
    assert completed(healed).result.model == "oa/gpt-main"  # type: ignore[arg-type]


async def test_connection_refused_fails_over(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connects are refused
    async with daemon(config(fake.port, oa_port=dead_port), tmp_path, ENV) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert result.model == "an/claude-backup"
    assert [a.reason for a in result.attempts] == ["network", "network", "ok"]
    assert "ConnectError" in result.attempts[0].detail


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("reset", "network"),
        ("malformed after=1", "stream_cut"),
        ("error_event after=0", "overloaded"),
    ],
)
async def test_broken_connections_and_streams_before_the_first_token(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path, fault: str, reason: str
) -> None:
    fake.configure({"per_model": {"gpt-main": f"fail forever with {fault}"}})
    async with daemon(config(fake.port, oa_extra="retries = 0"), tmp_path, ENV) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert text_of(events) == FULL  # type: ignore[arg-type]
    assert result.model == "an/claude-backup"
    assert result.attempts[0].reason == reason


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("hang", "no first token within 5 s"),
        ("slow_first_token delay_s=30", "no first token within 5 s"),
        ("stall after=2", "silent for 3 s"),
        ("slow_tokens delay_s=10", "no first token within 5 s"),
    ],
)
async def test_silence_times_out_and_is_not_retried(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path, fault: str, detail: str
) -> None:
    fake.configure({"per_model": {"gpt-main": f"fail forever with {fault}"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert text_of(events) == FULL == result.text  # type: ignore[arg-type]
    assert [a.reason for a in result.attempts] == ["timeout", "ok"]
    assert detail in result.attempts[0].detail


async def test_a_slow_first_token_within_budget_is_served(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "slow_first_token delay_s=4"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
    assert trail(events) == [("oa/gpt-main", "OA_KEY_1", "ok")]  # type: ignore[arg-type]


# -- after the commit point -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["cut after=3", "stall after=3", "malformed after=3", "error_event after=3"]
)
@pytest.mark.parametrize(
    ("primary", "fallback"),
    [("oa/gpt-main", "an/claude-backup"), ("an/claude-main", "oa/gpt-backup")],
)
async def test_a_stream_broken_after_content_is_completed_without_repeats(
    clock: trio.testing.MockClock,
    fake: FakeProvider,
    tmp_path: Path,
    fault: str,
    primary: str,
    fallback: str,
) -> None:
    """Anthropic continues a prefill; OpenAI restarts and only the rest is streamed."""
    fake.configure({"per_model": {primary.split("/")[1]: f"fail forever with {fault}"}})
    toml = config(
        fake.port,
        primary=primary,
        fallbacks=f'["{fallback}"]',
        oa_extra="retries = 0",
        an_extra="retries = 0",
    )
    async with daemon(toml, tmp_path, ENV) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert result.model == fallback
    assert text_of(events) == FULL == result.text  # type: ignore[arg-type]
    assert result.attempts[-1].reason == "ok"


async def test_a_missing_done_is_never_a_complete_answer(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "fail forever with no_done"}})
    async with daemon(config(fake.port, oa_extra="retries = 0"), tmp_path, ENV) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert [a.reason for a in result.attempts] == ["stream_cut", "ok"]
    assert "without [DONE]" in result.attempts[0].detail
    assert text_of(events) == FULL  # type: ignore[arg-type]


async def test_a_refused_prefill_restarts_without_it(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"claude-main": "cut after=3"}})
    toml = config(
        fake.port,
        primary="an/claude-main",
        fallbacks='["oa/gpt-backup"]',
        oa_extra="prefill = true",
        an_extra="retries = 0",
    )
    async with daemon(toml, tmp_path, ENV) as d:
        events = await ask(d)
    result = completed(events).result  # type: ignore[arg-type]
    assert [a.reason for a in result.attempts] == ["stream_cut", "format", "ok"]
    assert text_of(events) == FULL  # type: ignore[arg-type]


async def test_a_diverging_restart_ends_with_an_explicit_error(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure(
        {"answer": "{model} says: {prompt}", "per_model": {"claude-main": "cut after=2"}}
    )
    toml = config(
        fake.port, primary="an/claude-main", fallbacks='["oa/gpt-backup"]', an_extra="retries = 0"
    )
    async with daemon(toml, tmp_path, ENV) as d:
        events = await ask(d)
    error = failed(events)  # type: ignore[arg-type]
    assert error.kind is ErrorClass.STREAM_CUT
    assert "does not continue it" in error.message
    assert error.partial == text_of(events) == "claude-main says:"  # type: ignore[arg-type]


# -- surfaced ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("context_overflow", ErrorClass.CONTEXT_OVERFLOW),
        ("content_filter", ErrorClass.CONTENT_FILTER),
        ("format", ErrorClass.FORMAT),
    ],
)
async def test_context_content_and_format_errors_are_surfaced(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path, fault: str, kind: ErrorClass
) -> None:
    fake.configure({"per_model": {"gpt-main": f"fail forever with {fault}"}})
    async with daemon(config(fake.port), tmp_path, ENV) as d:
        events = await ask(d)
    error = failed(events)  # type: ignore[arg-type]
    assert error.kind is kind
    assert trail(events) == [("oa/gpt-main", "OA_KEY_1", kind.value)]  # type: ignore[arg-type]
    assert fake.stats()["by_model"] == {"gpt-main": 1}  # never resent, never routed around


async def test_context_overflow_moves_to_a_larger_window(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.configure({"per_model": {"gpt-main": "fail forever with context_overflow"}})
    windows = '[models.windows]\n"oa/gpt-main" = 128000\n"an/claude-backup" = 200000\n'
    async with daemon(config(fake.port, extra="") + windows, tmp_path, ENV) as d:
        events = await ask(d)
    assert completed(events).result.model == "an/claude-backup"  # type: ignore[arg-type]


async def test_a_refusing_server_fails_over_to_another(
    clock: trio.testing.MockClock, fake: FakeProvider, tmp_path: Path
) -> None:
    """`refuse` closes the fake's listening socket: later connects are refused."""
    other = FakeProvider(answer=ANSWER)
    async with trio.open_nursery() as nursery:
        await nursery.start(other.serve)
        fake.configure({"schedule": "refuse for_s=60"})
        toml = config(fake.port, oa_port=fake.port).replace(
            f'http://127.0.0.1:{fake.port}"\napi_key_env = "AN_KEY"',
            f'http://127.0.0.1:{other.port}"\napi_key_env = "AN_KEY"',
        )
        async with daemon(toml, tmp_path, ENV) as d:
            events = await ask(d)
            again = await ask(d)
        nursery.cancel_scope.cancel()
    result = completed(events).result  # type: ignore[arg-type]
    assert result.model == "an/claude-backup" and result.text == FULL
    assert [a.reason for a in result.attempts] == ["network", "network", "ok"]
    assert "ConnectError" in result.attempts[1].detail  # the retry found the port closed
    # Breakers are per route (provider, model, key): the second key is still
    # tried (once, plus its retry) before the request moves on.
    assert trail(again) == [  # type: ignore[arg-type]
        ("oa/gpt-main", "OA_KEY_2", "network"),
        ("oa/gpt-main", "OA_KEY_2", "network"),
        ("an/claude-backup", "AN_KEY", "ok"),
    ]
