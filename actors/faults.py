"""The fault language shared by the `faulty` provider and `callboard fake-provider`.

A *schedule* is a list of steps joined by `then`; each request takes the next
step. When the steps run out the provider answers normally, unless the
schedule ends in `then repeat`, which loops back to the first step::

    ok                                          always answer
    fail 2 with rate_limit then ok              two 429s, then answers
    fail forever with overloaded                a persistent 529/503
    fail 1 with server_error then ok 1 then repeat      a flapping provider
    cut after=3                                 once: the stream stops after 3 chunks
    rate_limit retry_after=2 then ok            a fault alone is `fail 1 with` it

A fault is a name and `key=value` parameters (see `FAULTS`). Seeded
probabilities add random faults on top of a schedule's `ok` steps, for
example `{"server_error": 0.1, "rate_limit retry_after=1": 0.05}`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from actors.errors import FaultSpecError

__all__ = ["FAULTS", "Fault", "FaultName", "FaultPlan", "Step", "parse_fault", "parse_schedule"]


class FaultName(StrEnum):
    """Every fault either injector can produce."""

    RATE_LIMIT = "rate_limit"  # 429, with or without retry-after
    QUOTA = "quota"  # 429 insufficient_quota (quota exhausted: billing)
    BILLING = "billing"  # 402
    AUTH = "auth"  # 401
    FORBIDDEN = "forbidden"  # 403
    SERVER_ERROR = "server_error"  # one 500
    OVERLOADED = "overloaded"  # 529 (Anthropic) / 503 overloaded (OpenAI)
    UNAVAILABLE = "unavailable"  # 503
    NOT_FOUND = "not_found"  # 404 model not found
    CONTEXT_OVERFLOW = "context_overflow"  # 400 context length exceeded
    CONTENT_FILTER = "content_filter"  # 400 content policy
    FORMAT = "format"  # 400 invalid request
    REFUSE = "refuse"  # connection refused
    RESET = "reset"  # connection reset before the response headers
    HANG = "hang"  # accept the request, never answer
    SLOW_FIRST_TOKEN = "slow_first_token"  # 200, then a long wait before the first chunk
    CUT = "cut"  # the stream stops after `after` chunks
    STALL = "stall"  # the stream goes silent after `after` chunks, connection open
    MALFORMED = "malformed"  # a malformed SSE event after `after` chunks
    NO_DONE = "no_done"  # every chunk, but no [DONE] / message_stop
    ERROR_EVENT = "error_event"  # an error event in the stream after a 200
    SLOW_TOKENS = "slow_tokens"  # every chunk `delay_s` apart: a too-slow token rate


# Parameters each fault accepts, with their defaults.
FAULTS: Final[Mapping[FaultName, Mapping[str, float]]] = {
    FaultName.RATE_LIMIT: {"retry_after": -1.0, "retry_after_ms": -1.0, "should_retry": -1.0},
    FaultName.QUOTA: {},
    FaultName.BILLING: {},
    FaultName.AUTH: {},
    FaultName.FORBIDDEN: {},
    FaultName.SERVER_ERROR: {"should_retry": -1.0},
    FaultName.OVERLOADED: {"retry_after": -1.0, "should_retry": -1.0},
    FaultName.UNAVAILABLE: {"retry_after": -1.0},
    FaultName.NOT_FOUND: {},
    FaultName.CONTEXT_OVERFLOW: {},
    FaultName.CONTENT_FILTER: {},
    FaultName.FORMAT: {},
    FaultName.REFUSE: {"for_s": 5.0},
    FaultName.RESET: {},
    FaultName.HANG: {},
    FaultName.SLOW_FIRST_TOKEN: {"delay_s": 60.0},
    FaultName.CUT: {"after": 2.0},
    FaultName.STALL: {"after": 2.0},
    FaultName.MALFORMED: {"after": 1.0},
    FaultName.NO_DONE: {},
    FaultName.ERROR_EVENT: {"after": 1.0},
    FaultName.SLOW_TOKENS: {"delay_s": 5.0},
}
"""A parameter of -1 means "not set" (no retry-after header, no x-should-retry)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault with its parameters (defaults filled in)."""

    name: FaultName
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, key: str) -> float | None:
        """A parameter's value, or None when it is not set."""
        value = self.params.get(key, FAULTS[self.name].get(key, -1.0))
        return None if value < 0 else value

    def __str__(self) -> str:
        args = " ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name.value} {args}".strip()


@dataclass(frozen=True, slots=True)
class Step:
    """A schedule step: `fault` (None: answer normally) for `count` requests (None: for ever)."""

    fault: Fault | None
    count: int | None


def parse_fault(text: str, *, schedule: str | None = None) -> Fault:
    """Parse `name key=value ...`.

    Raises:
        FaultSpecError: unknown fault or parameter, or a value that is not a number.
    """
    spec = schedule if schedule is not None else text
    words = text.split()
    if not words:
        raise FaultSpecError(spec, "a fault name is missing")
    try:
        name = FaultName(words[0])
    except ValueError:
        known = ", ".join(f.value for f in FaultName)
        raise FaultSpecError(spec, f"unknown fault {words[0]!r} (known: {known})") from None
    params: dict[str, float] = {}
    for word in words[1:]:
        key, sep, raw = word.partition("=")
        if not sep:
            raise FaultSpecError(spec, f"{word!r} is not a key=value parameter of {name.value}")
        if key not in FAULTS[name]:
            allowed = ", ".join(FAULTS[name]) or "none"
            raise FaultSpecError(
                spec, f"{name.value} has no parameter {key!r} (allowed: {allowed})"
            )
        if raw in ("true", "false"):
            value = 1.0 if raw == "true" else 0.0
        else:
            try:
                value = float(raw)
            except ValueError:
                raise FaultSpecError(spec, f"{key}={raw!r} is not a number") from None
            if value < 0:
                raise FaultSpecError(spec, f"{key}={raw!r} must not be negative")
        params[key] = value
    return Fault(name, params)


def _count(word: str, spec: str) -> int | None:
    if word in ("forever", "always"):
        return None
    if not word.isdigit() or int(word) < 1:
        raise FaultSpecError(spec, f"{word!r} is not a count (a whole number >= 1, or 'forever')")
    return int(word)


def parse_schedule(spec: str) -> tuple[tuple[Step, ...], bool]:
    """Parse a schedule into its steps and whether it repeats.

    Raises:
        FaultSpecError: the schedule does not parse.
    """
    parts = [part.strip() for part in spec.split(" then ")]
    repeat = False
    if parts and parts[-1] == "repeat":
        repeat = True
        parts = parts[:-1]
    if not parts or not all(parts):
        raise FaultSpecError(spec, "empty step")
    steps: list[Step] = []
    for i, part in enumerate(parts):
        words = part.split()
        last = i == len(parts) - 1
        if words[0] == "ok":
            if len(words) > 2:
                raise FaultSpecError(spec, f"{part!r}: 'ok' takes at most a count")
            count = _count(words[1], spec) if len(words) == 2 else (None if last else 1)
            steps.append(Step(None, count))
        elif words[0] == "fail":
            if "with" not in words:
                raise FaultSpecError(spec, f"{part!r}: expected 'fail [COUNT] with FAULT'")
            at = words.index("with")
            if at > 2:
                raise FaultSpecError(spec, f"{part!r}: expected 'fail [COUNT] with FAULT'")
            count = _count(words[1], spec) if at == 2 else 1
            steps.append(Step(parse_fault(" ".join(words[at + 1 :]), schedule=spec), count))
        else:
            steps.append(Step(parse_fault(part, schedule=spec), 1))
        if steps[-1].count is None and not last:
            raise FaultSpecError(spec, f"{part!r} lasts for ever, so the steps after it never run")
    return tuple(steps), repeat


class FaultPlan:
    """Decides, request by request, which fault (if any) to inject.

    Args:
        schedule: the scripted steps (default: `ok`).
        probabilities: fault spec -> chance per request, drawn on `ok` steps.
        seed: seeds the draw, so a run is reproducible.
    """

    def __init__(
        self,
        schedule: str = "ok",
        probabilities: Mapping[str, float] | None = None,
        seed: int | None = None,
    ) -> None:
        self.schedule = schedule
        self._steps, self._repeat = parse_schedule(schedule)
        self._chances: list[tuple[Fault, float]] = []
        total = 0.0
        for spec, chance in (probabilities or {}).items():
            if not 0 <= chance <= 1:
                raise FaultSpecError(spec, f"probability {chance!r} is not between 0 and 1")
            total += chance
            self._chances.append((parse_fault(spec), chance))
        if total > 1:
            raise FaultSpecError(
                str(dict(probabilities or {})), "probabilities add up to more than 1"
            )
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not secrets
        self._index = 0
        self._used = 0
        self.drawn = 0
        """Requests this plan has decided on."""

    def next(self) -> Fault | None:
        """The fault for the next request, or None to answer normally."""
        self.drawn += 1
        step = self._steps[self._index]
        self._used += 1
        if step.count is not None and self._used >= step.count:
            self._used = 0
            if self._index + 1 < len(self._steps):
                self._index += 1
            elif self._repeat:
                self._index = 0
            else:
                self._steps = (Step(None, None),)  # the schedule ran out: answer from now on
                self._index = 0
        if step.fault is not None:
            return step.fault
        if self._chances:
            roll = self._rng.random()
            for fault, chance in self._chances:
                if roll < chance:
                    return fault
                roll -= chance
        return None
