"""Anthropic specifics that the fake provider's answers do not reach."""

from __future__ import annotations

from actors.models import ChatMessage
from actors.providers.anthropic import skip_repeated, to_anthropic_messages


def test_turns_alternate_start_with_the_user_and_carry_the_prefill() -> None:
    messages = (
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="assistant", content="Earlier answer."),
        ChatMessage(role="user", content="one"),
        ChatMessage(role="user", content="two"),
    )
    system, turns = to_anthropic_messages(messages, "Partial")
    assert system == "Be brief."
    assert turns == [
        {"role": "user", "content": "(continue)"},
        {"role": "assistant", "content": "Earlier answer."},
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "Partial"},
    ]


def test_held_back_whitespace_is_not_sent_twice() -> None:
    assert skip_repeated(" ", " world") == ("world", "")
    assert skip_repeated("\n\n", "\n") == ("", "\n")  # still holding the second newline
    assert skip_repeated("\n", "\nNext") == ("Next", "")
    assert skip_repeated(" ", "world") == ("world", "")  # the model did not repeat it
