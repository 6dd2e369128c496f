"""The `echo` provider: local, deterministic, and honest about being an echo.

It answers `echo: <the last user message>`, streamed word by word, so a
newcomer gets an answer with no key at all, and tests get the same answer on
every route. A trailing assistant message (a prefill) is continued: when the
answer begins with it, only the rest is sent.
"""

from __future__ import annotations

import re
from typing import Final

import trio

from actors.config import EchoProviderConfig
from actors.models import ChatMessage, ProviderCall, ProviderDone, Usage
from actors.providers.base import Backend, Emit

__all__ = ["ECHO_PREFIX", "EchoBackend", "echo_answer", "split_words"]

ECHO_PREFIX: Final = "echo: "
_WORDS: Final = re.compile(r"\s*\S+")


def split_words(text: str) -> list[str]:
    """Pieces that concatenate back to `text` (leading spaces kept with each word)."""
    pieces = _WORDS.findall(text)
    consumed = sum(len(p) for p in pieces)
    if consumed < len(text):
        pieces.append(text[consumed:])  # trailing whitespace
    return pieces


def echo_answer(messages: tuple[ChatMessage, ...]) -> str:
    """The whole answer the echo provider gives to a conversation."""
    last = next((m.content for m in reversed(messages) if m.role == "user"), "")
    return ECHO_PREFIX + (last if last.strip() else "(nothing)")


class EchoBackend(Backend):
    """Streams `echo_answer` word by word, `word_delay_s` apart."""

    def __init__(self, config: EchoProviderConfig) -> None:
        self.config = config

    async def call(self, call: ProviderCall, emit: Emit) -> ProviderDone:
        answer = echo_answer(call.messages)
        if call.prefill and answer.startswith(call.prefill):
            answer = answer[len(call.prefill) :]
        words = split_words(answer)
        delay = self.config.word_delay_s
        if not call.stream:
            if delay:
                await trio.sleep(delay * len(words))
            await emit(answer)
        else:
            for word in words:
                if delay:
                    await trio.sleep(delay)
                await emit(word)
        prompt_words = sum(len(m.content.split()) for m in call.messages)
        return ProviderDone(
            usage=Usage(input_tokens=prompt_words, output_tokens=len(words)),
            finish_reason="stop",
        )
