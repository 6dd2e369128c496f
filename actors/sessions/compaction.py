"""Compaction: older turns become a summary, the recent ones stay verbatim.

When the turns since the last summary reach `after_turns`, or a session has
been idle `idle_s` with turns not yet summarized, a background task asks the
models (through the failover supervisor, like any request) to summarize the
previous summary and the older turns, keeping the last `keep_turns`
verbatim. The result is a `compaction` record in the transcript. A failed
compaction changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from actors.config import CompactionConfig
from actors.models import ChatMessage, ModelRequest
from actors.sessions.transcript import RECORD_VERSION, History, Turn

__all__ = [
    "SUMMARY_PROMPT",
    "CompactionPlan",
    "compaction_record",
    "due",
    "plan_compaction",
    "summary_request",
]

SUMMARY_PROMPT: Final = (
    "You compress a conversation so that it can continue without its older turns. "
    "Write a concise summary that keeps every fact, decision, preference, name, number "
    "and open question a later answer could need. Write it as plain prose, in the "
    "language of the conversation, without preamble."
)
_SUMMARY_MAX_TOKENS: Final = 1024


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """Which turns a compaction summarizes, and which it keeps."""

    summarize: tuple[Turn, ...]
    through_turn: int
    kept_turns: int


def due(history: History, config: CompactionConfig, *, idle: bool) -> bool:
    """Should a compaction start: enough new turns, or idle with anything to summarize?"""
    pending = len(history.since_summary())
    if pending >= config.after_turns:
        return True
    return idle and pending > config.keep_turns


def plan_compaction(history: History, config: CompactionConfig) -> CompactionPlan | None:
    """The older turns to summarize (None when all of them would be kept)."""
    pending = history.since_summary()
    cut = len(pending) - config.keep_turns
    if cut <= 0:
        return None
    summarize = tuple(pending[:cut])
    return CompactionPlan(summarize, summarize[-1].number, config.keep_turns)


def summary_request(
    history: History, plan: CompactionPlan, *, session_key: str, model: str | None
) -> ModelRequest:
    """The model request that writes the new summary."""
    lines = []
    if history.summary:
        lines.append(f"Summary of what came before:\n{history.summary}\n")
    lines.append("Conversation to summarize:")
    for turn in plan.summarize:
        lines.append(f"User: {turn.user}")
        lines.append(f"Assistant: {turn.assistant}")
    return ModelRequest(
        messages=(
            ChatMessage(role="system", content=SUMMARY_PROMPT),
            ChatMessage(role="user", content="\n".join(lines)),
        ),
        session_key=None,  # not the session's own request: no stickiness, no pin
        model=model,
        max_tokens=_SUMMARY_MAX_TOKENS,
    )


def compaction_record(summary: str, plan: CompactionPlan, model: str) -> dict[str, Any]:
    """The transcript record of a finished compaction."""
    return {
        "type": "compaction",
        "v": RECORD_VERSION,
        "ts": time.time(),
        "summary": summary,
        "through_turn": plan.through_turn,
        "kept_turns": plan.kept_turns,
        "model": model,
    }
