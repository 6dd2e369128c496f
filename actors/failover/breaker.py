"""Circuit breakers, one per route (provider, model, auth profile).

A route whose requests fail with route faults (overloaded, server errors,
network, timeouts, streams cut before the first token) `failures` times in a
row opens. While open, requests skip it, except that one request may *probe*
it every `probe_interval_s`; a successful probe closes it. There is no growing
ladder: a recovered route is back in use within one probe interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Admission", "Breaker", "BreakerState", "Breakers", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one attempt goes."""

    provider: str
    model: str
    profile: str | None

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}@{self.profile or '-'}"


class BreakerState(StrEnum):
    """closed: in use; open: skipped; probing: one request is testing it."""

    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"


class Admission(StrEnum):
    """What a breaker says about one request."""

    PASS = "pass"
    PROBE = "probe"
    """This request is the probe: one attempt, no retries."""
    SKIP = "skip"


class Breaker:
    """The breaker of one route."""

    __slots__ = ("failures", "next_probe_at", "opened_at", "probes", "state")

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.next_probe_at = 0.0
        self.probes = 0


_NEVER: Final = float("inf")


class Breakers:
    """Every route's breaker, created on first use.

    Args:
        failures: failed requests in a row that open a breaker.
        probe_interval_s: how often an open breaker admits one probe.
    """

    def __init__(self, *, failures: int, probe_interval_s: float) -> None:
        self.failures = failures
        self.probe_interval_s = probe_interval_s
        self._breakers: dict[Route, Breaker] = {}

    def get(self, route: Route) -> Breaker:
        """The route's breaker (closed if never seen)."""
        breaker = self._breakers.get(route)
        if breaker is None:
            breaker = self._breakers[route] = Breaker()
        return breaker

    def admit(self, route: Route, now: float) -> Admission:
        """May a request use `route` now? A PROBE admission must be settled by
        `succeeded` or `failed` (or `abandoned`)."""
        breaker = self._breakers.get(route)
        if breaker is None or breaker.state is BreakerState.CLOSED:
            return Admission.PASS
        if breaker.state is BreakerState.OPEN and now >= breaker.next_probe_at:
            breaker.state = BreakerState.PROBING
            breaker.probes += 1
            return Admission.PROBE
        return Admission.SKIP

    def succeeded(self, route: Route) -> None:
        """The route answered: close its breaker."""
        breaker = self._breakers.get(route)
        if breaker is not None:
            breaker.state = BreakerState.CLOSED
            breaker.failures = 0

    def failed(self, route: Route, now: float) -> bool:
        """A request gave up on the route after a route fault; True if the breaker is now open."""
        breaker = self.get(route)
        breaker.failures += 1
        if breaker.state is BreakerState.PROBING or breaker.failures >= self.failures:
            if breaker.state is BreakerState.CLOSED:
                breaker.opened_at = now
            breaker.state = BreakerState.OPEN
            breaker.next_probe_at = now + self.probe_interval_s
            return True
        return False

    def abandoned(self, route: Route, now: float) -> None:
        """A probe ended without a verdict (caller went away, or a key-level fault)."""
        breaker = self._breakers.get(route)
        if breaker is not None and breaker.state is BreakerState.PROBING:
            breaker.state = BreakerState.OPEN
            breaker.next_probe_at = now  # let the next request probe

    def is_open(self, route: Route) -> bool:
        """True while the route is skipped or being probed."""
        breaker = self._breakers.get(route)
        return breaker is not None and breaker.state is not BreakerState.CLOSED

    def open_routes(self) -> list[Route]:
        """Routes whose breaker is not closed."""
        return [r for r, b in self._breakers.items() if b.state is not BreakerState.CLOSED]

    def next_probe_at(self, route: Route) -> float:
        """When the route may next be probed (inf if closed)."""
        breaker = self._breakers.get(route)
        if breaker is None or breaker.state is BreakerState.CLOSED:
            return _NEVER
        return breaker.next_probe_at
