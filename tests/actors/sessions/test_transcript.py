"""Transcript records: torn tails, corrupt lines, and the history they add up to."""

from __future__ import annotations

import logging

import pytest

from actors.sessions.transcript import encode, history_from, parse_transcript


def lines(*records: dict[str, object]) -> bytes:
    return b"".join(encode(r) for r in records)


def message(role: str, content: str, turn: int, **extra: object) -> dict[str, object]:
    return {"type": "message", "role": role, "content": content, "turn": turn, **extra}


def test_a_torn_last_line_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    data = lines(message("user", "hi", 1)) + b'{"type":"message","role":"assis'
    parsed = parse_transcript(data, source="t.jsonl")
    assert parsed.records == [message("user", "hi", 1)]
    assert parsed.torn_tail and parsed.corrupt_lines == 0
    assert "t.jsonl: skipping a torn last line" in caplog.text


def test_corrupt_lines_are_counted_and_skipped() -> None:
    data = (
        lines(message("user", "a", 1)) + b"not json\n[1, 2]\n" + lines(message("assistant", "b", 1))
    )
    parsed = parse_transcript(data, source="t")
    assert [r["content"] for r in parsed.records] == ["a", "b"]
    assert parsed.corrupt_lines == 2 and not parsed.torn_tail


def test_unicode_round_trips() -> None:
    record = message("user", "héllo — 你好 🎉", 1)
    assert parse_transcript(encode(record), source="t").records == [record]


def test_history_pairs_turns_and_applies_compactions() -> None:
    records = [
        {"type": "session", "key": "main:ws:alice", "session_id": "s1", "created_at": 1.0},
        message("user", "one", 1),
        message("assistant", "1", 1, model="p/m"),
        message("user", "two", 2),
        message("assistant", "2", 2, model="p/m", failover="p/a rate_limit -> p/m"),
        message("user", "three", 3),  # no answer: an error or a crash
        {"type": "error", "turn": 3, "code": "timeout"},
        message("user", "four", 4),
        message("assistant", "4", 4, model="p/n"),
        {"type": "compaction", "summary": "S", "through_turn": 2, "kept_turns": 1},
        message("user", "five", 5),
        message("assistant", "5", 5, model="p/n"),
    ]
    history = history_from(records)
    assert history.key == "main:ws:alice"
    assert history.summary == "S" and history.through_turn == 2 and history.compactions == 1
    assert [(t.number, t.user, t.assistant) for t in history.turns] == [
        (4, "four", "4"),
        (5, "five", "5"),
    ]
    assert history.total_turns == 5
    assert history.last_model == "p/n" and history.last_failover == "p/a rate_limit -> p/m"
    assert history.token_estimate() == (1 + 4 + 1 + 4 + 1) // 4


def test_a_rotated_transcript_starts_from_its_carry_record() -> None:
    records = [
        {"type": "session", "key": "k:c:p", "session_id": "s1"},
        {
            "type": "carry",
            "summary": "old",
            "through_turn": 7,
            "total_turns": 9,
            "turns": [
                {"number": 8, "user": "u8", "assistant": "a8"},
                {"number": 9, "user": "u9", "assistant": "a9"},
            ],
        },
        message("user", "ten", 10),
        message("assistant", "10", 10),
    ]
    history = history_from(records)
    assert history.summary == "old" and history.total_turns == 10
    assert [t.number for t in history.since_summary()] == [8, 9, 10]


def test_memory_keeps_only_the_recent_turns() -> None:
    records = [
        r
        for n in range(1, 31)
        for r in (message("user", str(n), n), message("assistant", str(n), n))
    ]
    assert [t.number for t in history_from(records, keep_turns=5).turns] == [26, 27, 28, 29, 30]
