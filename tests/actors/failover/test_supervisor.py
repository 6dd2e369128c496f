"""The failover supervisor in a real tree, with the in-process `faulty` and `echo` providers.

The same policies over real HTTP, against the fake provider, are in
`tests/actors/providers/test_http_failover.py`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from actors.errors import ErrorClass
from actors.events import MODEL_FAILOVER, MODEL_REQUEST, MODEL_RESPONSE, MODEL_SELECT
from actors.failover.client import FAILOVER_NAME
from actors.failover.supervisor import FailoverStatus, GetFailoverStatus
from actors.models import ChatMessage, Completed, Delta, ModelRequest
from runtime import Veto
from tests.actors.harness import completed, daemon, failed, text_of, trail

ECHO = "echo: hello there world"


def config(
    schedule: str, *, extra: str = "", fallbacks: str = '["local/echo"]', **faulty: object
) -> str:
    options = "".join(f"{k} = {json.dumps(v)}\n" for k, v in faulty.items())
    return f"""
[providers.local]
kind = "echo"
[providers.flaky]
kind = "faulty"
wraps = "local"
schedule = "{schedule}"
{options}
[providers.flaky.timeouts]
first_token_s = 30
idle_s = 10
[models]
primary = "flaky/main"
fallbacks = {fallbacks}
[models.failover]
probe_interval_s = 15
retry_base_s = 0.5
retry_max_s = 4
{extra}
"""


async def test_a_healthy_primary_serves_and_the_result_says_so(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("ok"), tmp_path) as d:
        events = await d.ask("hello there world")
    result = completed(events).result
    assert text_of(events) == ECHO == result.text
    assert [e.text for e in events if isinstance(e, Delta)] == [
        "echo:",
        " hello",
        " there",
        " world",
    ]
    assert (result.provider, result.model, result.source) == ("flaky", "flaky/main", "default")
    assert trail(events) == [("flaky/main", None, "ok")]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 4)


async def test_one_server_error_is_retried_on_the_same_route(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail 1 with server_error then ok"), tmp_path) as d:
        events = await d.ask("hello there world")
    assert text_of(events) == ECHO
    assert trail(events) == [("flaky/main", None, "server_error"), ("flaky/main", None, "ok")]


async def test_persistent_overload_fails_over_and_the_breaker_probes_once_per_interval(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail forever with overloaded"), tmp_path) as d:
        first = await d.ask("hello there world")
        assert completed(first).result.model == "local/echo"
        assert trail(first) == [
            ("flaky/main", None, "overloaded"),
            ("flaky/main", None, "overloaded"),  # one retry, then fail over
            ("local/echo", None, "ok"),
        ]
        # Within the probe interval the primary is skipped without a hit.
        second = await d.ask("hello there world")
        assert trail(second) == [
            ("flaky/main", None, "skipped: breaker open"),
            ("local/echo", None, "ok"),
        ]
        # Once per interval one request probes it: a single attempt, no retry.
        hits_per_interval = []
        for _ in range(4):
            await trio.sleep(15)
            before = await _status(d)
            for _ in range(5):
                events = await d.ask("hello there world")
                assert text_of(events) == ECHO
            after = await _status(d)
            hits_per_interval.append(after.probes - before.probes)
        assert hits_per_interval == [1, 1, 1, 1]
        assert (await _status(d)).open_breakers == ("flaky/main@-",)


async def test_a_recovered_primary_is_back_within_one_probe_interval(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail 3 with overloaded then ok"), tmp_path) as d:
        assert completed(await d.ask("x")).result.model == "local/echo"  # 2 hits: breaker opens
        await trio.sleep(15)
        probe = await d.ask("x")  # third fault: the probe fails
        assert trail(probe)[0] == ("flaky/main", None, "overloaded")
        await trio.sleep(15)
        healed = await d.ask("x")
        assert trail(healed) == [("flaky/main", None, "ok")]
        assert (await _status(d)).open_breakers == ()


async def test_a_silent_route_times_out_and_is_not_retried(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("hang"), tmp_path) as d:
        began = trio.current_time()
        events = await d.ask("hello there world")
        took = trio.current_time() - began
    assert text_of(events) == ECHO
    assert trail(events) == [("flaky/main", None, "timeout"), ("local/echo", None, "ok")]
    attempt = completed(events).result.attempts[0]
    assert "no first token within 30 s" in attempt.detail
    assert took == pytest.approx(30, abs=0.5)


async def test_a_short_retry_after_is_waited_for(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with daemon(config("rate_limit retry_after=3 then ok"), tmp_path) as d:
        began = trio.current_time()
        events = await d.ask("x")
        took = trio.current_time() - began
    assert trail(events) == [("flaky/main", None, "rate_limit"), ("flaky/main", None, "ok")]
    assert took >= 3


async def test_a_long_retry_after_is_not_waited_for(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("rate_limit retry_after=120 then ok"), tmp_path) as d:
        began = trio.current_time()
        events = await d.ask("x")
        took = trio.current_time() - began
    assert trail(events) == [("flaky/main", None, "rate_limit"), ("local/echo", None, "ok")]
    assert took < 1


async def test_x_should_retry_false_forbids_the_retry(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail 1 with server_error should_retry=false then ok"), tmp_path) as d:
        events = await d.ask("x")
    assert trail(events) == [("flaky/main", None, "server_error"), ("local/echo", None, "ok")]


@pytest.mark.parametrize(
    ("fault", "kind"), [("content_filter", "content_filter"), ("format", "format")]
)
async def test_content_filter_and_format_are_surfaced_without_fallback(
    autojump_clock: MockClock, tmp_path: Path, fault: str, kind: str
) -> None:
    async with daemon(config(fault), tmp_path) as d:
        events = await d.ask("x")
    error = failed(events)
    assert error.kind.value == kind and not error.retryable
    assert trail(events) == [("flaky/main", None, kind)]
    assert text_of(events) == ""


async def test_context_overflow_moves_only_to_a_larger_window(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    windows = '[models.windows]\n"flaky/main" = 8000\n"local/small" = 4000\n"local/big" = 200000\n'
    toml = config("context_overflow", fallbacks='["local/small", "local/big"]', extra=windows)
    async with daemon(toml, tmp_path) as d:
        events = await d.ask("x")
    assert trail(events) == [("flaky/main", None, "context_overflow"), ("local/big", None, "ok")]


async def test_context_overflow_without_a_larger_window_goes_back_to_the_caller(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("context_overflow"), tmp_path) as d:
        events = await d.ask("x")
    error = failed(events)
    assert error.kind is ErrorClass.CONTEXT_OVERFLOW and error.retryable  # compact, then retry
    assert trail(events) == [("flaky/main", None, "context_overflow")]  # never resent


async def test_model_not_found_moves_to_the_next_model(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("not_found"), tmp_path) as d:
        events = await d.ask("x")
    assert trail(events) == [("flaky/main", None, "model_not_found"), ("local/echo", None, "ok")]


# -- the commit point -------------------------------------------------------------------


async def test_a_cut_after_the_first_token_continues_with_a_prefill(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("cut after=2 then ok"), tmp_path) as d:
        events = await d.ask("hello there world")
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert "".join(deltas) == ECHO  # nothing repeated, nothing lost
    assert deltas[:2] == ["echo:", " hello"]
    assert trail(events) == [("flaky/main", None, "stream_cut"), ("flaky/main", None, "ok")]


async def test_without_prefill_the_restarted_answer_streams_only_the_rest(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("cut after=2 then ok", prefill=False), tmp_path) as d:
        events = await d.ask("hello there world")
    assert text_of(events) == ECHO
    assert [e.text for e in events if isinstance(e, Delta)][2:] == [" there", " world"]


async def test_a_stall_mid_stream_times_out_and_the_fallback_continues(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("stall after=1"), tmp_path) as d:
        events = await d.ask("hello there world")
    assert text_of(events) == ECHO
    result = completed(events).result
    assert trail(events) == [("flaky/main", None, "timeout"), ("local/echo", None, "ok")]
    assert "silent for 10 s" in result.attempts[0].detail


async def test_failure_after_partial_content_is_never_a_clean_end(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(
        config("cut after=2 then fail forever with overloaded", retries=0), tmp_path
    ) as d:
        await _replace_fallbacks(d, ())
        events = await d.ask("hello there world")
    error = failed(events)
    assert error.partial == "echo: hello" == text_of(events)
    assert error.kind is ErrorClass.STREAM_CUT


async def test_the_total_budget_bounds_a_slow_stream(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    toml = config("slow_tokens delay_s=8", extra="total_s = 20", fallbacks="[]")
    async with daemon(toml, tmp_path) as d:
        began = trio.current_time()
        events = await d.ask("hello there world")
        took = trio.current_time() - began
    error = failed(events)
    assert error.kind is ErrorClass.TIMEOUT and "total budget of 20 s" in error.message
    assert took == pytest.approx(20, abs=0.5)
    assert error.partial == text_of(events) and error.partial.startswith("echo:")


async def test_the_caller_leaving_aborts_the_request(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("slow_first_token delay_s=5"), tmp_path) as d:
        request = ModelRequest(messages=(ChatMessage(role="user", content="x"),))
        left_at = 0.0
        async with d.client.stream(request) as events:
            with trio.move_on_after(1):
                async for _ in events:
                    pass  # nothing comes within 1 s: the first token is slow
            left_at = trio.current_time()
        status = await _status(d)
        assert status.requests == 1 and status.served == {}
        await trio.sleep(10)
        assert (await _status(d)).served == {}  # the slow answer was never completed
        assert trio.current_time() - left_at >= 10


# -- selection, hooks ------------------------------------------------------------------------


async def test_override_order_request_then_session_then_channel_then_default(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    toml = config("ok", extra='[models.aliases]\nfast = "local/fast"\n')
    async with daemon(toml, tmp_path) as d:
        pins = {"session_pin": "local/session", "channel_pin": "local/channel"}
        assert completed(await d.ask("x", model="fast", **pins)).result.model == "local/fast"
        by_session = completed(await d.ask("x", **pins)).result
        assert (by_session.model, by_session.source) == ("local/session", "session")
        by_channel = completed(await d.ask("x", channel_pin="local/channel")).result
        assert (by_channel.model, by_channel.source) == ("local/channel", "channel")
        assert completed(await d.ask("x")).result.source == "default"


async def test_auto_asks_the_classifier_for_a_tier(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    tiers = '[models.tiers]\ncode = ["local/coder"]\nchat = ["local/chatty"]\n'
    async with daemon(config("ok", extra=tiers), tmp_path) as d:
        coding = completed(
            await d.ask("```python\ndef f(x):\n    return x\n```\nfix this bug", model="auto")
        )
        assert (coding.result.model, coding.result.source) == ("local/coder", "classifier")
        assert coding.result.classification is not None
        assert coding.result.classification.label == "code"
        pinned = completed(await d.ask("def f(): pass", model="auto", session_pin="local/pinned"))
        assert pinned.result.model == "local/pinned"  # a pin is more specific than auto


async def test_request_fallbacks_and_per_model_chains(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    chains = '[models.chains]\n"flaky/main" = ["local/chained"]\n'
    async with daemon(config("fail forever with server_error", extra=chains), tmp_path) as d:
        assert completed(await d.ask("x")).result.model == "local/chained"
        mine = completed(await d.ask("x", fallbacks=("local/mine",))).result
        assert mine.model == "local/mine"


async def test_unknown_models_and_unavailable_providers_are_explained(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    toml = (
        config("ok", fallbacks="[]")
        + '[providers.gone]\nkind = "openai"\napi_key_env = "NOPE_KEY"\n'
    )
    async with daemon(toml, tmp_path) as d:
        events = await d.ask("x", model="gone/gpt")
        error = failed(events)
        assert error.kind is ErrorClass.MODEL_NOT_FOUND
        assert "provider gone skipped: NOPE_KEY is not set" in error.message
        assert trail(events) == [("gone/gpt", None, "skipped: no provider")]
        nameless = failed(await d.ask("x", model="nameless"))
        assert "unknown model 'nameless'" in nameless.message


async def test_hooks_select_request_response_and_failover_fire(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail forever with overloaded"), tmp_path) as d:
        hooks = d.system.hooks
        seen: dict[str, list[object]] = {
            "select": [],
            "request": [],
            "response": [],
            "failover": [],
        }

        async def on_select(p):  # type: ignore[no-untyped-def]
            seen["select"].append(p)

        async def on_request(p):  # type: ignore[no-untyped-def]
            seen["request"].append(p)

        async def on_response(p):  # type: ignore[no-untyped-def]
            seen["response"].append(p)

        async def on_failover(p):  # type: ignore[no-untyped-def]
            seen["failover"].append(p)

        hooks.intercept(MODEL_SELECT, on_select)
        hooks.observe(MODEL_REQUEST, on_request)
        hooks.observe(MODEL_RESPONSE, on_response)
        hooks.intercept(MODEL_FAILOVER, on_failover)
        events = await d.ask("hello there world", session_key="main:ws:alice")
        await trio.sleep(1)
    assert len(seen["select"]) == 1 and seen["select"][0].chain == ("flaky/main", "local/echo")  # type: ignore[attr-defined]
    assert [p.model for p in seen["request"]] == ["flaky/main", "flaky/main", "local/echo"]  # type: ignore[attr-defined]
    assert [p.attempt for p in seen["request"]] == [1, 2, 3]  # type: ignore[attr-defined]
    (failover,) = seen["failover"]
    assert (failover.from_model, failover.to_model, failover.reason) == (
        "flaky/main",
        "local/echo",
        "overloaded",
    )  # type: ignore[attr-defined]
    (response,) = seen["response"]
    assert response.result == completed(events).result  # type: ignore[attr-defined]
    assert response.session_key == "main:ws:alice"  # type: ignore[attr-defined]


async def test_model_select_may_replace_the_chain(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("ok"), tmp_path) as d:

        async def choose(p):  # type: ignore[no-untyped-def]
            return dataclasses.replace(p, chain=("local/chosen",))

        d.system.hooks.intercept(MODEL_SELECT, choose)
        assert completed(await d.ask("x")).result.model == "local/chosen"


async def test_model_failover_may_veto_or_redirect(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail forever with server_error", retries=0), tmp_path) as d:

        async def redirect(p):  # type: ignore[no-untyped-def]
            return dataclasses.replace(p, to_model="local/elsewhere")

        handle = d.system.hooks.intercept(MODEL_FAILOVER, redirect)
        assert completed(await d.ask("x")).result.model == "local/elsewhere"
        d.system.hooks.remove(MODEL_FAILOVER, handle)

        async def veto(p):  # type: ignore[no-untyped-def]
            return Veto("stay on the primary")

        d.system.hooks.intercept(MODEL_FAILOVER, veto)
        await trio.sleep(15)  # the breaker admits a probe again
        events = await d.ask("x")
    error = failed(events)
    assert error.kind is ErrorClass.SERVER_ERROR
    assert trail(events) == [("flaky/main", None, "server_error")]


async def test_status_counts_requests_and_failovers(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with daemon(config("fail 2 with server_error then ok"), tmp_path) as d:
        await d.ask("x")
        await d.ask("x")
        status = await _status(d)
    assert status.requests == 2
    assert status.served == {"local/echo": 2}
    assert status.failovers == {"server_error": 1}


async def _status(d: object) -> FailoverStatus:
    ref = d.system.registry.lookup(FAILOVER_NAME)  # type: ignore[attr-defined]
    status = await ref.ask(GetFailoverStatus(), 5)
    assert isinstance(status, FailoverStatus)
    return status


async def _replace_fallbacks(d: object, chain: tuple[str, ...]) -> None:
    async def only_primary(p):  # type: ignore[no-untyped-def]
        return dataclasses.replace(p, chain=p.chain[:1] + chain)

    d.system.hooks.intercept(MODEL_SELECT, only_primary)  # type: ignore[attr-defined]


def _completed(events: list[object]) -> Completed:
    last = events[-1]
    assert isinstance(last, Completed)
    return last
