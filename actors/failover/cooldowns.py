"""Key cooldowns that survive restarts (`<state>/auth-state.json`).

Key-level faults take an auth profile (a key) out of rotation for a while:

* rate_limit cools the key *for that model* for max(retry-after, ladder step),
  ladder 30 s, 60 s, 5 min by default;
* auth disables the whole key on its own ladder; auth_permanent for a day;
* billing disables the whole key for 5 h, doubling to 24 h.

A cooldown is never shortened by a later, shorter signal. A key back in rotation
without a fault for `clean_period_s` starts its ladders from the first step again. The state is
written atomically (`actors.durable.write_atomic`) after every change and read back
at start, so a restart does not hammer a key that is still cooling.

Times on disk are wall-clock epoch seconds; in memory they are derived from
trio's clock, so tests on a `MockClock` see cooldowns expire in virtual time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import trio

from actors.clock import WallClock
from actors.config import FailoverConfig
from actors.durable import set_aside, write_atomic
from actors.errors import ErrorClass

__all__ = ["STATE_VERSION", "Cooldown", "Cooldowns", "WallClock"]

log = logging.getLogger("callboard.failover.cooldowns")

STATE_VERSION: Final = 1
KEY_LEVEL: Final = frozenset(
    {ErrorClass.RATE_LIMIT, ErrorClass.AUTH, ErrorClass.AUTH_PERMANENT, ErrorClass.BILLING}
)


@dataclass(frozen=True, slots=True)
class Cooldown:
    """One key (or key and model) out of rotation until `until` (epoch seconds)."""

    provider: str
    profile: str
    model: str | None
    reason: str
    until: float
    step: int
    last_fault_at: float

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        return (self.provider, self.profile, self.model, _ladder_of(ErrorClass(self.reason)))


def _ladder_of(kind: ErrorClass) -> str:
    return "rate_limit" if kind is ErrorClass.RATE_LIMIT else kind.value


class Cooldowns:
    """The cooldowns of every key, persisted in `path`.

    Args:
        path: the state file (None: memory only).
        config: the ladders and the clean period.
        clock: epoch time on trio's clock.
    """

    def __init__(self, path: Path | None, config: FailoverConfig, clock: WallClock) -> None:
        self.path = path
        self.config = config
        self.clock = clock
        self._entries: dict[tuple[str, str, str | None, str], Cooldown] = {}

    # -- persistence -------------------------------------------------------------

    def load(self) -> int:
        """Read the state file; returns how many cooldowns are still active.

        A missing file is an empty state; an unreadable one is set aside as
        `<name>.corrupt` with a warning, so a bad write never stops the daemon.
        """
        if self.path is None or not self.path.exists():
            return 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            rows = data["cooldowns"] if data.get("version") == STATE_VERSION else []
            entries = [Cooldown(**row) for row in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = set_aside(self.path)
            log.warning("%s is unreadable (%s); moved aside to %s", self.path, exc, aside.name)
            return 0
        now = self.clock.now()
        for entry in entries:
            if entry.until + self.config.clean_period_s > now:
                self._entries[entry.key] = entry
        return sum(1 for e in self._entries.values() if e.until > now)

    def _write(self, text: str) -> None:
        assert self.path is not None
        write_atomic(self.path, text.encode())

    async def save(self) -> None:
        """Write the state atomically (in a worker thread: fsync blocks)."""
        if self.path is None:
            return
        payload = {
            "version": STATE_VERSION,
            "saved_at": self.clock.now(),
            "cooldowns": [asdict(e) for e in self._entries.values()],
        }
        await trio.to_thread.run_sync(self._write, json.dumps(payload, indent=1))

    # -- decisions ---------------------------------------------------------------

    def _ladder(self, kind: ErrorClass) -> Sequence[float]:
        cfg = self.config
        if kind is ErrorClass.RATE_LIMIT:
            return cfg.rate_limit_ladder_s
        if kind is ErrorClass.BILLING:
            return cfg.billing_ladder_s
        if kind is ErrorClass.AUTH:
            return cfg.auth_ladder_s
        return (cfg.auth_permanent_s,)

    def cool(
        self,
        provider: str,
        profile: str,
        model: str | None,
        kind: ErrorClass,
        retry_after_s: float | None = None,
    ) -> Cooldown:
        """Take a key (rate_limit: the key for `model`) out of rotation per its ladder.

        Returns:
            The cooldown now in force (never shorter than one already there).
        """
        if kind not in KEY_LEVEL:
            raise ValueError(f"{kind.value} is not a key-level fault")
        scope_model = model if kind is ErrorClass.RATE_LIMIT else None
        now = self.clock.now()
        key = (provider, profile, scope_model, _ladder_of(kind))
        previous = self._entries.get(key)
        step = 0
        # The clean period counts from the end of the last cooldown: a key that
        # fails again soon after coming back climbs the ladder.
        if previous is not None and now - previous.until < self.config.clean_period_s:
            step = previous.step + 1
        ladder = self._ladder(kind)
        duration = ladder[min(step, len(ladder) - 1)]
        if retry_after_s is not None:
            duration = max(duration, retry_after_s)
        until = now + duration
        if previous is not None and previous.until > until:
            until = previous.until  # never shortened by a later, shorter signal
        entry = Cooldown(provider, profile, scope_model, kind.value, until, step, now)
        self._entries[key] = entry
        log.warning(
            "key %s of %s%s cooling for %.0f s (%s, step %d)",
            profile,
            provider,
            f" for {model}" if scope_model else "",
            until - now,
            kind.value,
            step + 1,
        )
        return entry

    def blocked(self, provider: str, profile: str | None, model: str) -> Cooldown | None:
        """The cooldown that keeps this key (for this model) out now, if any."""
        if profile is None or not self._entries:
            return None
        now = self.clock.now()
        found: Cooldown | None = None
        for entry in self._entries.values():
            if (
                entry.provider == provider
                and entry.profile == profile
                and entry.model in (None, model)
                and entry.until > now
                and (found is None or entry.until > found.until)
            ):
                found = entry
        return found

    def active(self) -> list[Cooldown]:
        """Cooldowns in force now."""
        now = self.clock.now()
        return [e for e in self._entries.values() if e.until > now]

    def to_json(self) -> list[dict[str, Any]]:
        """The active cooldowns, for status pages (keys are never included: profiles are ids)."""
        now = self.clock.now()
        return [{**asdict(e), "remaining_s": round(e.until - now, 1)} for e in self.active()]
