"""The `anthropic` provider: the Anthropic Messages API, streamed (SSE) or whole.

System messages go to `system`; consecutive messages of one role are merged,
as the API wants turns to alternate and to begin with the user. A prefill is a
trailing assistant message, which the model continues (the API refuses one
that ends in whitespace, so that whitespace is held back and matched against
the start of the continuation). A stream must end with `message_stop`; an
`error` event after the 200 is classified like an error response;
`stop_reason: refusal` is a content_filter failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

from actors.config import AnthropicProviderConfig
from actors.errors import ErrorClass, ModelError
from actors.models import ChatMessage, ProviderCall, ProviderDone, Usage
from actors.providers.base import Emit
from actors.providers.classify import classify_stream_error
from actors.providers.http import HttpBackend, parse_json
from actors.providers.sse import SSEEvent

__all__ = ["AnthropicBackend", "skip_repeated", "to_anthropic_messages"]

_REFUSAL: Final = "refusal"
_CONTINUE_PLACEHOLDER: Final = "(continue)"


def to_anthropic_messages(
    messages: tuple[ChatMessage, ...], prefill: str | None
) -> tuple[str, list[dict[str, str]]]:
    """(system text, alternating user/assistant turns starting with the user)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": _CONTINUE_PLACEHOLDER})
    if prefill:
        if turns[-1]["role"] == "assistant":
            turns[-1]["content"] += "\n\n" + prefill
        else:
            turns.append({"role": "assistant", "content": prefill})
    return system, turns


def skip_repeated(held: str, text: str) -> tuple[str, str]:
    """Drop from the start of `text` what it repeats of `held`; returns (text, still held).

    Once the continuation departs from the held whitespace, nothing more is held.
    """
    common = 0
    while common < min(len(held), len(text)) and text[common] == held[common]:
        common += 1
    if common < len(text):
        return text[common:], ""
    return "", held[common:]


class AnthropicBackend(HttpBackend):
    """The Messages API over httpx."""

    wire = "anthropic"
    config: AnthropicProviderConfig

    def request(self, call: ProviderCall) -> tuple[str, dict[str, Any], dict[str, str]]:
        prefill = call.prefill.rstrip() if call.prefill else None
        system, turns = to_anthropic_messages(call.messages, prefill or None)
        body: dict[str, Any] = {
            "model": call.model,
            "max_tokens": call.max_tokens or self.config.max_tokens,
            "messages": turns,
            "stream": call.stream,
        }
        if system:
            body["system"] = system
        if call.temperature is not None:
            body["temperature"] = call.temperature
        headers = {"anthropic-version": self.config.version}
        key = self.key(call.profile)
        if key is not None:
            headers["x-api-key"] = key
        return "/v1/messages", body, headers

    def _stop(self, reason: Any) -> str | None:
        if reason == _REFUSAL:
            raise ModelError(
                ErrorClass.CONTENT_FILTER, f"{self.provider_id}: the model refused (refusal)"
            )
        return reason if isinstance(reason, str) else None

    async def call(self, call: ProviderCall, emit: Emit) -> ProviderDone:
        held = call.prefill[len(call.prefill.rstrip()) :] if call.prefill else ""
        if not held:
            return await super().call(call, emit)

        async def without_held(text: str) -> None:
            # The whitespace held back from the prefill already reached the
            # caller: drop it where the continuation repeats it.
            nonlocal held
            text, held = skip_repeated(held, text)
            if text:
                await emit(text)

        return await super().call(call, without_held)

    async def read_stream(self, events: AsyncIterator[SSEEvent], emit: Emit) -> ProviderDone:
        input_tokens = output_tokens = 0
        stop: str | None = None
        async for event in events:
            data = parse_json(event.data, provider=self.provider_id, what="SSE event")
            if not isinstance(data, dict):
                raise ModelError(
                    ErrorClass.STREAM_CUT, f"{self.provider_id}: SSE event is not an object"
                )
            kind = data.get("type", event.event)
            if kind == "error" or event.event == "error":
                raise classify_stream_error(data, provider=self.provider_id)
            if kind == "message_start":
                usage = (data.get("message") or {}).get("usage") or {}
                input_tokens = int(usage.get("input_tokens") or 0)
            elif kind == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    await emit(delta["text"])
            elif kind == "message_delta":
                stop = self._stop((data.get("delta") or {}).get("stop_reason")) or stop
                output_tokens = int((data.get("usage") or {}).get("output_tokens") or 0)
            elif kind == "message_stop":
                return ProviderDone(
                    usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
                    finish_reason=stop,
                )
        raise ModelError(
            ErrorClass.STREAM_CUT, f"{self.provider_id}: the stream ended without message_stop"
        )

    async def read_whole(self, body: Any, emit: Emit) -> ProviderDone:
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise ModelError(
                ErrorClass.STREAM_CUT, f"{self.provider_id}: a response without content"
            )
        text = "".join(
            block.get("text", "")
            for block in body["content"]
            if isinstance(block, dict) and block.get("type") == "text"
        )
        stop = self._stop(body.get("stop_reason"))
        if text:
            await emit(text)
        usage = body.get("usage") or {}
        return ProviderDone(
            usage=Usage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
            ),
            finish_reason=stop,
        )
