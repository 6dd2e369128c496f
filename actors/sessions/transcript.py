"""Transcript records: one JSON object a line, and the history they add up to.

A transcript (`sessions/<session_id>.jsonl`) begins with a `session` header
naming its key, so that a transcript alone is enough to rebuild its index
entry. Then come `message` records (user and assistant), `error` records for
turns that failed, and `compaction` records (a summary of the turns up to
`through_turn`). Reading is forgiving in one precise way: a torn last line (a
crash in the middle of a write) is skipped with a warning; any other line that
does not parse is skipped with a warning too and counted.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Final

from actors.models import ChatMessage

__all__ = [
    "RECORD_VERSION",
    "History",
    "ParsedTranscript",
    "Turn",
    "encode",
    "history_from",
    "parse_transcript",
]

log = logging.getLogger("callboard.sessions.transcript")

RECORD_VERSION: Final = 1


def encode(record: dict[str, Any]) -> bytes:
    """One record as a transcript line (compact JSON and a newline)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class ParsedTranscript:
    """Records read from a transcript, and what had to be skipped."""

    records: list[dict[str, Any]]
    torn_tail: bool
    corrupt_lines: int


def parse_transcript(data: bytes, *, source: str) -> ParsedTranscript:
    """Parse transcript bytes; a torn last line and corrupt lines are skipped with a warning."""
    lines = data.split(b"\n")
    torn = bool(lines[-1].strip())  # no newline after the last line: it was being written
    if torn:
        log.warning("%s: skipping a torn last line (%d bytes)", source, len(lines[-1]))
    records: list[dict[str, Any]] = []
    corrupt = 0
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            corrupt += 1
            log.warning("%s: line %d is not a JSON object; skipped", source, number)
            continue
        records.append(record)
    return ParsedTranscript(records, torn, corrupt)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Turn:
    """One exchange: the user's message and the answer."""

    number: int
    user: str
    assistant: str

    def messages(self) -> tuple[ChatMessage, ChatMessage]:
        """The turn as chat messages, built once (every later request resends them)."""
        cached = _MESSAGES.get(self)
        if cached is None:
            cached = (
                ChatMessage(role="user", content=self.user),
                ChatMessage(role="assistant", content=self.assistant),
            )
            _MESSAGES[self] = cached
        return cached


# Per-turn chat messages, dropped with their turn.
_MESSAGES: weakref.WeakKeyDictionary[Turn, tuple[ChatMessage, ChatMessage]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(slots=True)
class History:
    """What a session remembers: the latest summary and the turns after it."""

    key: str | None = None
    summary: str | None = None
    through_turn: int = 0
    turns: list[Turn] = field(default_factory=list)
    total_turns: int = 0
    compactions: int = 0
    last_model: str | None = None
    last_failover: str | None = None
    updated_at: float | None = None

    def since_summary(self) -> list[Turn]:
        """Turns not covered by the summary."""
        return [t for t in self.turns if t.number > self.through_turn]

    def token_estimate(self) -> int:
        """A rough count of the tokens the history costs (4 characters a token)."""
        chars = len(self.summary or "") + sum(len(t.user) + len(t.assistant) for t in self.turns)
        return chars // 4


def history_from(records: list[dict[str, Any]], *, keep_turns: int | None = None) -> History:
    """Rebuild a session's history from its transcript records.

    Args:
        records: in file order.
        keep_turns: keep at most this many turns in memory (None: all since the summary).
    """
    history = History()
    pending_user: tuple[int, str] | None = None
    for record in records:
        kind = record.get("type")
        ts = record.get("ts")
        if isinstance(ts, int | float):
            history.updated_at = float(ts)
        if kind == "session":
            history.key = record.get("key") if isinstance(record.get("key"), str) else None
        elif kind == "message":
            role, content = record.get("role"), record.get("content")
            turn = record.get("turn")
            if not isinstance(content, str) or not isinstance(turn, int):
                continue
            if role == "user":
                pending_user = (turn, content)
            elif role == "assistant" and pending_user is not None and pending_user[0] == turn:
                history.turns.append(Turn(turn, pending_user[1], content))
                history.total_turns = max(history.total_turns, turn)
                pending_user = None
                if isinstance(record.get("model"), str):
                    history.last_model = record["model"]
                failover = record.get("failover")
                if isinstance(failover, str) or failover is None:
                    history.last_failover = failover or history.last_failover
        elif kind == "compaction":
            summary, through = record.get("summary"), record.get("through_turn")
            if isinstance(summary, str) and isinstance(through, int):
                history.summary = summary
                history.through_turn = through
                history.compactions += 1
                history.turns = [t for t in history.turns if t.number > through]
        elif kind == "carry":
            # The head of a rotated transcript: what the previous file left behind.
            summary = record.get("summary")
            history.summary = summary if isinstance(summary, str) else history.summary
            through = record.get("through_turn")
            history.through_turn = through if isinstance(through, int) else history.through_turn
            total = record.get("total_turns")
            history.total_turns = total if isinstance(total, int) else history.total_turns
            for raw in record.get("turns") or ():
                if isinstance(raw, dict) and isinstance(raw.get("number"), int):
                    history.turns.append(
                        Turn(raw["number"], str(raw.get("user", "")), str(raw.get("assistant", "")))
                    )
    if keep_turns is not None and len(history.turns) > keep_turns:
        history.turns = history.turns[-keep_turns:]
    return history
