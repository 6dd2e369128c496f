"""The `openai` provider: OpenAI Chat Completions, and every server that speaks it
(OpenRouter, Ollama, vLLM, LiteLLM, ...), streamed (SSE) or whole.

A stream must end with `data: [DONE]`; one that ends without it was cut and is
never presented as complete. An error object inside the stream, after a 200,
is classified like an error response. `finish_reason: content_filter` is a
content_filter failure. A prefill is sent as a trailing assistant message only
when the provider's `prefill = true` (most of these servers do not continue it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from actors.errors import ErrorClass, ModelError
from actors.models import ProviderCall, ProviderDone, Usage
from actors.providers.base import Emit
from actors.providers.classify import classify_stream_error
from actors.providers.http import HttpBackend, parse_json
from actors.providers.sse import SSEEvent

__all__ = ["OpenAIBackend"]

_DONE = "[DONE]"


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
    )


class OpenAIBackend(HttpBackend):
    """Chat Completions over httpx."""

    wire = "openai"

    def request(self, call: ProviderCall) -> tuple[str, dict[str, Any], dict[str, str]]:
        messages = [{"role": m.role, "content": m.content} for m in call.messages]
        if call.prefill:
            messages.append({"role": "assistant", "content": call.prefill})
        body: dict[str, Any] = {"model": call.model, "messages": messages, "stream": call.stream}
        if call.stream:
            body["stream_options"] = {"include_usage": True}
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        if call.temperature is not None:
            body["temperature"] = call.temperature
        headers = {}
        key = self.key(call.profile)
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return "/chat/completions", body, headers

    def _finish(self, reason: Any) -> str | None:
        if reason == "content_filter":
            raise ModelError(
                ErrorClass.CONTENT_FILTER, f"{self.provider_id}: the answer was filtered"
            )
        return reason if isinstance(reason, str) else None

    async def read_stream(self, events: AsyncIterator[SSEEvent], emit: Emit) -> ProviderDone:
        usage = Usage()
        finish: str | None = None
        async for event in events:
            if event.data.strip() == _DONE:
                return ProviderDone(usage=usage, finish_reason=finish)
            chunk = parse_json(event.data, provider=self.provider_id, what="SSE event")
            if not isinstance(chunk, dict):
                raise ModelError(
                    ErrorClass.STREAM_CUT, f"{self.provider_id}: SSE event is not an object"
                )
            if "error" in chunk:
                raise classify_stream_error(chunk, provider=self.provider_id)
            usage = _usage(chunk.get("usage")) or usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    await emit(text)
                if choice.get("finish_reason"):
                    finish = self._finish(choice["finish_reason"])
        raise ModelError(
            ErrorClass.STREAM_CUT, f"{self.provider_id}: the stream ended without [DONE]"
        )

    async def read_whole(self, body: Any, emit: Emit) -> ProviderDone:
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModelError(
                ErrorClass.STREAM_CUT, f"{self.provider_id}: a response without choices"
            ) from None
        finish = self._finish(choice.get("finish_reason"))
        if text:
            await emit(text)
        return ProviderDone(usage=_usage(body.get("usage")) or Usage(), finish_reason=finish)
