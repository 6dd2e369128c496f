"""What the failover supervisor does about each class of failure.

=================  ===========  =============  ===========  ==================================
class              retry route  cool the key   breaker      then
=================  ===========  =============  ===========  ==================================
rate_limit         yes          key + model    no           next key, then next model
overloaded         yes          no             yes          next model
server_error       yes          no             yes          next model
network            yes          no             yes          next model
stream_cut         yes          no             yes          next model (before the commit point)
timeout            no           no             yes          next model (silence is not retried)
auth               no           whole key      no           next key
auth_permanent     no           whole key      no           next key
billing            no           whole key      no           next key
model_not_found    no           no             no           next model
context_overflow   no           no             no           next model with a larger window, else
                                                            back to the caller (compaction)
content_filter     no           no             no           surfaced to the caller
format             no           no             no           surfaced (a refused prefill: the same
                                                            route again without it)
=================  ===========  =============  ===========  ==================================

Retries use full-jitter backoff, bounded by the provider's `retries` and by
the request's deadline; a `retry-after` is honoured (up to `max_retry_wait_s`,
beyond which the key is cooled instead), and `x-should-retry: false` forbids a
retry while `true` allows one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from actors.errors import ErrorClass, ModelError

__all__ = ["POLICY", "Next", "Rule", "retry_wait_s", "rule_for"]


class Next(StrEnum):
    """Where a request goes after a failure on a route (and its retries)."""

    NEXT_KEY = "next_key"
    NEXT_MODEL = "next_model"
    LARGER_WINDOW = "larger_window"
    SURFACE = "surface"


@dataclass(frozen=True, slots=True)
class Rule:
    """The policy for one error class."""

    retry: bool
    cool_key: bool
    breaker: bool
    then: Next


POLICY: Final[dict[ErrorClass, Rule]] = {
    ErrorClass.RATE_LIMIT: Rule(retry=True, cool_key=True, breaker=False, then=Next.NEXT_KEY),
    ErrorClass.OVERLOADED: Rule(retry=True, cool_key=False, breaker=True, then=Next.NEXT_MODEL),
    ErrorClass.SERVER_ERROR: Rule(retry=True, cool_key=False, breaker=True, then=Next.NEXT_MODEL),
    ErrorClass.NETWORK: Rule(retry=True, cool_key=False, breaker=True, then=Next.NEXT_MODEL),
    ErrorClass.STREAM_CUT: Rule(retry=True, cool_key=False, breaker=True, then=Next.NEXT_MODEL),
    ErrorClass.TIMEOUT: Rule(retry=False, cool_key=False, breaker=True, then=Next.NEXT_MODEL),
    ErrorClass.AUTH: Rule(retry=False, cool_key=True, breaker=False, then=Next.NEXT_KEY),
    ErrorClass.AUTH_PERMANENT: Rule(retry=False, cool_key=True, breaker=False, then=Next.NEXT_KEY),
    ErrorClass.BILLING: Rule(retry=False, cool_key=True, breaker=False, then=Next.NEXT_KEY),
    ErrorClass.MODEL_NOT_FOUND: Rule(
        retry=False, cool_key=False, breaker=False, then=Next.NEXT_MODEL
    ),
    ErrorClass.CONTEXT_OVERFLOW: Rule(
        retry=False, cool_key=False, breaker=False, then=Next.LARGER_WINDOW
    ),
    ErrorClass.CONTENT_FILTER: Rule(retry=False, cool_key=False, breaker=False, then=Next.SURFACE),
    ErrorClass.FORMAT: Rule(retry=False, cool_key=False, breaker=False, then=Next.SURFACE),
}


def rule_for(kind: ErrorClass) -> Rule:
    """The rule of an error class (every class has one)."""
    return POLICY[kind]


def retry_wait_s(
    error: ModelError,
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rng: random.Random,
) -> float:
    """Full-jitter backoff before retry number `attempt` (1-based), at least the retry-after."""
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 30))
    wait = rng.uniform(0, ceiling)
    if error.retry_after_s is not None:
        wait = max(wait, error.retry_after_s)
    return wait
