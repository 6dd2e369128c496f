"""Circuit breakers: open on route faults, one probe per interval, close on success."""

from __future__ import annotations

from actors.failover.breaker import Admission, Breakers, BreakerState, Route

ROUTE = Route("p", "m", "KEY_A")


def test_a_fault_opens_and_probes_come_one_per_interval() -> None:
    breakers = Breakers(failures=1, probe_interval_s=15)
    assert breakers.admit(ROUTE, 0) is Admission.PASS
    assert breakers.failed(ROUTE, 0)
    assert breakers.admit(ROUTE, 1) is Admission.SKIP
    assert breakers.admit(ROUTE, 15) is Admission.PROBE
    assert breakers.admit(ROUTE, 15.5) is Admission.SKIP  # the probe is in flight
    breakers.failed(ROUTE, 16)
    assert breakers.admit(ROUTE, 30) is Admission.SKIP  # 15 s after the failed probe
    assert breakers.admit(ROUTE, 31) is Admission.PROBE
    breakers.succeeded(ROUTE)
    assert breakers.admit(ROUTE, 31.1) is Admission.PASS
    assert breakers.get(ROUTE).probes == 2


def test_the_interval_never_grows() -> None:
    breakers = Breakers(failures=1, probe_interval_s=10)
    breakers.failed(ROUTE, 0)
    now = 0.0
    for _ in range(20):
        now += 10
        assert breakers.admit(ROUTE, now) is Admission.PROBE
        breakers.failed(ROUTE, now)
    assert breakers.next_probe_at(ROUTE) == now + 10


def test_a_threshold_above_one_needs_consecutive_failures() -> None:
    breakers = Breakers(failures=3, probe_interval_s=15)
    assert not breakers.failed(ROUTE, 0)
    assert not breakers.failed(ROUTE, 1)
    breakers.succeeded(ROUTE)
    assert not breakers.failed(ROUTE, 2)
    assert not breakers.failed(ROUTE, 3)
    assert breakers.failed(ROUTE, 4)
    assert breakers.is_open(ROUTE) and breakers.open_routes() == [ROUTE]


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    breakers = Breakers(failures=1, probe_interval_s=15)
    breakers.failed(ROUTE, 0)
    assert breakers.admit(ROUTE, 15) is Admission.PROBE
    breakers.abandoned(ROUTE, 16)
    assert breakers.get(ROUTE).state is BreakerState.OPEN
    assert breakers.admit(ROUTE, 16) is Admission.PROBE


def test_routes_are_independent_per_key() -> None:
    breakers = Breakers(failures=1, probe_interval_s=15)
    breakers.failed(ROUTE, 0)
    other = Route("p", "m", "KEY_B")
    assert breakers.admit(other, 1) is Admission.PASS
    assert str(ROUTE) == "p/m@KEY_A" and str(Route("p", "m", None)) == "p/m@-"
