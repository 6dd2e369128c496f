"""Dead letters: counts by reason and throttled logging."""

from __future__ import annotations

import logging

import pytest
import trio
from trio.testing import MockClock

from runtime import DeadLetterReason, DeadLetters


async def test_counts_and_recent_by_reason(autojump_clock: MockClock) -> None:
    dead = DeadLetters(recent=3)
    for i in range(5):
        dead.record(f"a{i}", i, DeadLetterReason.MAILBOX_FULL)
    dead.record("b", "x", DeadLetterReason.ACTOR_STOPPED)
    assert dead.counts() == {"mailbox_full": 5, "actor_stopped": 1}
    assert dead.total == 6
    assert [(d.recipient, d.message_type) for d in dead.recent()] == [
        ("a3", "int"),
        ("a4", "int"),
        ("b", "str"),
    ]


async def test_logging_is_throttled_per_reason(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callboard.runtime.deadletters")
    dead = DeadLetters(log_interval_s=10)
    for _ in range(50):
        dead.record("busy", "m", DeadLetterReason.MAILBOX_FULL)
    dead.record("gone", "m", DeadLetterReason.ACTOR_STOPPED)
    assert len(caplog.records) == 2  # one per reason
    await trio.sleep(11)
    dead.record("busy", "m", DeadLetterReason.MAILBOX_FULL)
    assert len(caplog.records) == 3
    assert "49 more of this reason since the last line" in caplog.records[-1].getMessage()
