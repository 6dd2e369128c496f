"""The fault schedule language."""

from __future__ import annotations

import pytest

from actors.errors import FaultSpecError
from actors.faults import FaultName, FaultPlan, parse_fault, parse_schedule


def drawn(plan: FaultPlan, n: int) -> list[str | None]:
    return [None if (f := plan.next()) is None else str(f) for _ in range(n)]


def test_fail_n_then_ok() -> None:
    plan = FaultPlan("fail 2 with rate_limit then ok")
    assert drawn(plan, 4) == ["rate_limit", "rate_limit", None, None]


def test_forever_and_repeat() -> None:
    assert drawn(FaultPlan("fail forever with overloaded"), 3) == ["overloaded"] * 3
    flapping = FaultPlan("fail 1 with server_error then ok 2 then repeat")
    assert drawn(flapping, 6) == ["server_error", None, None, "server_error", None, None]


def test_a_fault_alone_happens_once_then_the_provider_answers() -> None:
    assert drawn(FaultPlan("cut after=3"), 3) == ["cut after=3", None, None]


def test_parameters_and_their_defaults() -> None:
    fault = parse_fault("rate_limit retry_after=2 should_retry=false")
    assert fault.name is FaultName.RATE_LIMIT
    assert (
        fault.param("retry_after"),
        fault.param("retry_after_ms"),
        fault.param("should_retry"),
    ) == (2, None, 0)
    assert parse_fault("stall").param("after") == 2


def test_seeded_probabilities_are_reproducible() -> None:
    one = drawn(
        FaultPlan("ok", {"server_error": 0.3, "rate_limit retry_after=1": 0.2}, seed=42), 200
    )
    two = drawn(
        FaultPlan("ok", {"server_error": 0.3, "rate_limit retry_after=1": 0.2}, seed=42), 200
    )
    assert one == two
    assert 40 < one.count("server_error") < 80 and 20 < one.count("rate_limit retry_after=1") < 60


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("fail 2 with rate_limt", "unknown fault 'rate_limt'"),
        ("fail two with server_error", "'two' is not a count"),
        ("fail with", "a fault name is missing"),
        ("fail 2 rate_limit", "expected 'fail [COUNT] with FAULT'"),
        ("cut after=x", "after='x' is not a number"),
        ("cut before=2", "cut has no parameter 'before' (allowed: after)"),
        ("fail forever with overloaded then ok", "lasts for ever"),
        ("ok 1 then  then ok", "empty step"),
        ("stall 3", "'3' is not a key=value parameter of stall"),
    ],
)
def test_bad_schedules_say_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(
        FaultSpecError,
        match=problem.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        parse_schedule(spec)


def test_bad_probabilities() -> None:
    with pytest.raises(FaultSpecError, match="between 0 and 1"):
        FaultPlan("ok", {"server_error": 1.5})
    with pytest.raises(FaultSpecError, match="add up to more than 1"):
        FaultPlan("ok", {"server_error": 0.6, "overloaded": 0.6})
