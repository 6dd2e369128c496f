"""The failover policy covers every error class; retry waits are full jitter."""

from __future__ import annotations

import random

from actors.errors import ErrorClass, ModelError
from actors.failover.policy import POLICY, Next, retry_wait_s, rule_for


def test_every_error_class_has_a_rule() -> None:
    assert set(POLICY) == set(ErrorClass)


def test_key_level_faults_rotate_keys_and_route_faults_open_breakers() -> None:
    for kind in (
        ErrorClass.RATE_LIMIT,
        ErrorClass.AUTH,
        ErrorClass.AUTH_PERMANENT,
        ErrorClass.BILLING,
    ):
        assert rule_for(kind).cool_key and rule_for(kind).then is Next.NEXT_KEY
        assert not rule_for(kind).breaker
    for kind in (
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.NETWORK,
        ErrorClass.TIMEOUT,
        ErrorClass.STREAM_CUT,
    ):
        assert rule_for(kind).breaker and rule_for(kind).then is Next.NEXT_MODEL
    assert not rule_for(ErrorClass.TIMEOUT).retry
    assert rule_for(ErrorClass.CONTENT_FILTER).then is Next.SURFACE
    assert rule_for(ErrorClass.FORMAT).then is Next.SURFACE
    assert rule_for(ErrorClass.CONTEXT_OVERFLOW).then is Next.LARGER_WINDOW


def test_retry_waits_are_full_jitter_and_honour_retry_after() -> None:
    rng = random.Random(1)
    error = ModelError(ErrorClass.SERVER_ERROR, "x")
    waits = [retry_wait_s(error, 3, base_s=0.5, max_s=8, rng=rng) for _ in range(500)]
    assert all(0 <= w <= 2.0 for w in waits) and max(waits) > 1.5 and min(waits) < 0.1
    capped = [retry_wait_s(error, 30, base_s=0.5, max_s=8, rng=rng) for _ in range(100)]
    assert max(capped) <= 8
    slow = ModelError(ErrorClass.RATE_LIMIT, "x", retry_after_s=4)
    assert all(retry_wait_s(slow, 1, base_s=0.5, max_s=8, rng=rng) >= 4 for _ in range(50))
