"""A client of the WebSocket gateway, for `callboard chat|send|status` and for tests.

async with GatewayClient.connect("ws://127.0.0.1:18789", token=...) as client:
    final = await client.chat("alice", "hello", on_delta=print_piece)
    tree = (await client.request("status"))["tree"]
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from actors.errors import GatewayError

__all__ = ["DEFAULT_URL", "GatewayClient"]

DEFAULT_URL: Final = "ws://127.0.0.1:18789"
REQUEST_TIMEOUT_S: Final = 30.0
CLOSE_SERVICE_RESTART: Final = 1012
RUN_TIMEOUT_S: Final = 600.0
RUN_BUFFER: Final = 100_000
"""Events of one run a slow caller may leave unread (a client does not drop them)."""

OnDelta = Callable[[str], Awaitable[None]]


@asynccontextmanager
async def _closing_transport(ws: WebSocketConnection) -> AsyncIterator[None]:
    """Close the socket under `ws` on the way out.

    trio-websocket's client leaves its socket open when the *server* closes
    the connection (a 1008, 1009 or 1012 close): its `aclose` returns early
    once a close reason is known. Closing the transport ourselves is harmless
    after a normal close and plugs that leak (it reaches a private attribute).
    """
    try:
        yield
    finally:
        stream = getattr(ws, "_stream", None)
        if isinstance(stream, trio.abc.AsyncResource):
            await trio.aclose_forcefully(stream)


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception inside (nested) groups, unless it is a cancellation."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return None if isinstance(exc, trio.Cancelled) else exc


class GatewayClient:
    """One connection to the gateway, with requests matched to their answers."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._answers: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._runs: dict[str, list[trio.MemorySendChannel[dict[str, Any]]]] = {}
        self._early: dict[str, list[dict[str, Any]]] = {}
        self.closed_code: int | None = None

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str = DEFAULT_URL, *, token: str | None = None, client: str = "callboard-cli"
    ) -> AsyncIterator[GatewayClient]:
        """Open a connection and send `connect`.

        Raises:
            GatewayError: the gateway refused the connection or the token.
        """
        try:
            async with (
                open_websocket_url(url) as ws,
                _closing_transport(ws),
                trio.open_nursery() as nursery,
            ):
                self = cls(ws)
                nursery.start_soon(self._reader)
                params: dict[str, Any] = {"client": client}
                if token is not None:
                    params["token"] = token
                try:
                    await self.request("connect", params)
                except GatewayError as exc:
                    if self.closed_code == CLOSE_SERVICE_RESTART:
                        raise GatewayError(
                            "shutting_down", "the gateway is shutting down", retryable=True
                        ) from exc
                    raise
                yield self
                nursery.cancel_scope.cancel()
        except HandshakeError as exc:
            raise GatewayError("unreachable", f"{url}: {exc}", retryable=True) from exc
        except OSError as exc:
            raise GatewayError("unreachable", f"{url}: {exc}", retryable=True) from exc
        except BaseExceptionGroup as group:
            # The reader's nursery wraps what the caller's block raised: hand it back whole.
            lone = _lone(group)
            if lone is None:
                raise
            raise lone from None

    async def _reader(self) -> None:
        try:
            while True:
                frame = json.loads(await self.ws.get_message())
                if frame.get("type") == "res":
                    waiting = self._answers.pop(str(frame.get("id")), None)
                    if waiting is not None:
                        waiting.send_nowait(frame)
                elif frame.get("type") == "event" and frame.get("event") == "chat":
                    payload = frame["payload"]
                    listeners = self._runs.get(payload["run_id"])
                    if listeners:
                        for listener in listeners:
                            listener.send_nowait(payload)
                    else:
                        self._early.setdefault(payload["run_id"], []).append(payload)
        except ConnectionClosed as exc:
            self.closed_code = exc.reason.code if exc.reason is not None else None
            for waiting in self._answers.values():
                waiting.close()
            for listeners in self._runs.values():
                for listener in listeners:
                    listener.close()

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send a request and wait for its answer's payload.

        Raises:
            GatewayError: an error answer, a closed connection or no answer in time.
        """
        request_id = str(next(self._ids))
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._answers[request_id] = send
        frame = {"type": "req", "id": request_id, "method": method, "params": params or {}}
        try:
            await self.ws.send_message(json.dumps(frame))
        except ConnectionClosed as exc:
            if exc.reason is not None:
                self.closed_code = exc.reason.code
            raise GatewayError("closed", "the connection is closed", retryable=True) from exc
        with trio.move_on_after(timeout_s) as scope:
            try:
                answer = await receive.receive()
            except trio.EndOfChannel:
                raise GatewayError(
                    "closed", f"the connection closed ({self.closed_code})", retryable=True
                ) from None
        if scope.cancelled_caught:
            raise GatewayError(
                "timeout", f"no answer to {method} within {timeout_s:g} s", retryable=True
            )
        if not answer.get("ok"):
            error = answer.get("error") or {}
            raise GatewayError(
                str(error.get("code")),
                str(error.get("message")),
                retryable=bool(error.get("retryable")),
            )
        payload: dict[str, Any] = answer.get("payload") or {}
        return payload

    async def chat(
        self,
        session: str,
        text: str,
        *,
        on_delta: OnDelta | None = None,
        idempotency_key: str | None = None,
        timeout_s: float = RUN_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send a message and follow its run to the end; returns the last `chat` payload.

        The result's `state` is `final`, `error` or `aborted`.
        """
        params: dict[str, Any] = {"session": session, "text": text}
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        started = await self.request("chat.send", params)
        run_id = started["run_id"]
        send, receive = trio.open_memory_channel[dict[str, Any]](RUN_BUFFER)
        self._runs.setdefault(run_id, []).append(send)
        for early in self._early.pop(run_id, []):
            send.send_nowait(early)
        try:
            with trio.fail_after(timeout_s):
                async for payload in receive:
                    if payload["state"] == "delta":
                        if on_delta is not None:
                            await on_delta(payload["text"])
                        continue
                    return payload
        except trio.TooSlowError:
            raise GatewayError(
                "timeout", f"run {run_id} did not end within {timeout_s:g} s"
            ) from None
        finally:
            listeners = self._runs.get(run_id, [])
            if send in listeners:
                listeners.remove(send)
            if not listeners:
                self._runs.pop(run_id, None)
        raise GatewayError("closed", f"the connection closed during run {run_id}", retryable=True)
