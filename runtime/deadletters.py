"""Dead letters: messages that were dropped or could not be delivered.

Every drop is counted by reason and kept in a short ring of recent letters, so
an operator can see what is being lost and why. Logging is throttled per
reason: the first letter of a reason is logged at once, later ones are folded
into one line per `log_interval_s`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import trio

__all__ = ["DeadLetter", "DeadLetterReason", "DeadLetters"]

log = logging.getLogger("callboard.runtime.deadletters")

DEFAULT_LOG_INTERVAL_S: Final = 10.0
DEFAULT_RECENT_LETTERS: Final = 100


class DeadLetterReason(StrEnum):
    """Why a message became a dead letter."""

    MAILBOX_FULL = "mailbox_full"
    ACTOR_STOPPED = "actor_stopped"
    NO_SUCH_ACTOR = "no_such_actor"
    ASK_EXPIRED = "ask_expired"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that was not handled."""

    recipient: str
    message_type: str
    reason: DeadLetterReason
    at_s: float


def _now_s() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio.run, e.g. a sync caller during teardown
        return 0.0


class DeadLetters:
    """Counts, remembers and (throttled) logs dead letters.

    Args:
        log_interval_s: at most one log line per reason within this interval.
        recent: how many recent letters `recent()` keeps.
    """

    __slots__ = ("_counts", "_last_log_s", "_log_interval_s", "_recent", "_suppressed")

    def __init__(
        self,
        *,
        log_interval_s: float = DEFAULT_LOG_INTERVAL_S,
        recent: int = DEFAULT_RECENT_LETTERS,
    ) -> None:
        self._counts: Counter[DeadLetterReason] = Counter()
        self._recent: deque[DeadLetter] = deque(maxlen=recent)
        self._log_interval_s = log_interval_s
        self._last_log_s: dict[DeadLetterReason, float] = {}
        self._suppressed: Counter[DeadLetterReason] = Counter()

    def record(self, recipient: str, message: object, reason: DeadLetterReason) -> None:
        """Count one dead letter and log it unless this reason logged recently."""
        now = _now_s()
        letter = DeadLetter(recipient, type(message).__name__, reason, now)
        self._counts[reason] += 1
        self._recent.append(letter)
        last = self._last_log_s.get(reason)
        if last is not None and now - last < self._log_interval_s:
            self._suppressed[reason] += 1
            return
        self._last_log_s[reason] = now
        folded = self._suppressed.pop(reason, 0)
        log.warning(
            "dead letter: %s to %r (%s)%s",
            letter.message_type,
            recipient,
            reason.value,
            f"; {folded} more of this reason since the last line" if folded else "",
        )

    @property
    def total(self) -> int:
        """All dead letters counted so far."""
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        """Dead letters counted so far, by reason."""
        return {reason.value: n for reason, n in self._counts.items()}

    def recent(self) -> list[DeadLetter]:
        """The most recent dead letters, oldest first."""
        return list(self._recent)
