"""What the HTTP providers share: one reused `httpx.AsyncClient`, the request,
and the translation of every transport failure at one place.

Subclasses say how to build a request body and how to read an answer; this
base opens the stream, turns an error status into a classified `ModelError`,
and wraps reading so that any httpx or OS error becomes one too, knowing
whether the response had started (a reset before the headers is `network`,
after them `stream_cut`).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final

import httpx

from actors.config import AnthropicProviderConfig, OpenAIProviderConfig
from actors.errors import ErrorClass, ModelError
from actors.models import ProviderCall, ProviderDone
from actors.providers.base import Backend, Emit
from actors.providers.classify import Wire, classify_http, classify_transport
from actors.providers.sse import SSEEvent, iter_sse

__all__ = ["HttpBackend", "parse_json"]

_ERROR_BODY_LIMIT_BYTES: Final = 64 * 1024


def parse_json(data: str | bytes, *, provider: str, what: str) -> Any:
    """JSON from a provider; anything unreadable is a broken answer (`stream_cut`)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        text = data if isinstance(data, str) else data[:200].decode("utf-8", "replace")
        raise ModelError(
            ErrorClass.STREAM_CUT, f"{provider}: malformed {what}: {text[:120]!r}"
        ) from None


class HttpBackend(Backend):
    """A backend that talks to an HTTP API with one reused client.

    Args:
        provider_id: for error details.
        config: the provider's table (base_url, headers, timeouts).
        keys: the key of each auth profile.
    """

    wire: Wire

    def __init__(
        self,
        provider_id: str,
        config: OpenAIProviderConfig | AnthropicProviderConfig,
        keys: Mapping[str, str],
    ) -> None:
        self.provider_id = provider_id
        self.config = config
        self._keys = dict(keys)
        self.client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        # The connect budget is httpx's own (it is the only one that can tell
        # connecting from waiting); first-token and idle budgets are trio
        # scopes in the failover supervisor.
        self.client = httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/"),
            headers=self.config.headers,
            timeout=httpx.Timeout(None, connect=self.config.timeouts.connect_s),
        )

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def key(self, profile: str | None) -> str | None:
        """The key of an auth profile (None for keyless endpoints)."""
        if profile is None:
            return None
        try:
            return self._keys[profile]
        except KeyError:
            raise ModelError(
                ErrorClass.AUTH_PERMANENT, f"{self.provider_id}: no key for profile {profile}"
            ) from None

    @abstractmethod
    def request(self, call: ProviderCall) -> tuple[str, dict[str, Any], dict[str, str]]:
        """(path, JSON body, headers) for a call."""

    @abstractmethod
    async def read_stream(self, events: AsyncIterator[SSEEvent], emit: Emit) -> ProviderDone:
        """Consume an SSE answer."""

    @abstractmethod
    async def read_whole(self, body: Any, emit: Emit) -> ProviderDone:
        """Consume a non-streamed JSON answer."""

    @asynccontextmanager
    async def _response(self, call: ProviderCall) -> AsyncIterator[httpx.Response]:
        client = self.client
        assert client is not None, "open() first"
        path, body, headers = self.request(call)
        try:
            async with client.stream("POST", path, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise classify_http(
                        response.status_code,
                        response.headers,
                        raw[:_ERROR_BODY_LIMIT_BYTES],
                        provider=self.provider_id,
                    )
                yield response
        except (httpx.HTTPError, OSError) as exc:
            raise classify_transport(
                exc, response_started=False, provider=self.provider_id
            ) from exc

    async def call(self, call: ProviderCall, emit: Emit) -> ProviderDone:
        async with self._response(call) as response:
            try:
                if call.stream:
                    async with aclosing(iter_sse(response.aiter_bytes())) as events:
                        done = await self.read_stream(events, emit)
                        # Read to the end of the body (normally nothing is left after
                        # the terminator), so the connection goes back to the pool.
                        async for _ in events:
                            pass
                    return done
                raw = await response.aread()
            except (httpx.HTTPError, OSError) as exc:
                raise classify_transport(
                    exc, response_started=True, provider=self.provider_id
                ) from exc
            return await self.read_whole(
                parse_json(raw, provider=self.provider_id, what="response body"), emit
            )
