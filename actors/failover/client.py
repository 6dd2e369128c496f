"""How callers reach the failover supervisor: stream an answer, or wait for it whole.

    client = ModelsClient(registry)
    async with client.stream(request) as events:
        async for event in events:     # Delta ..., then Completed or Failed
            ...

    result = await client.complete(request)   # raises ModelCallFailed

The stream always ends with exactly one `Completed` or `Failed`: if the
supervisor goes away mid-answer, the caller gets a `Failed` saying so, never a
silent, clean end after partial content. Leaving the `async with` early aborts
the request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Final

import trio

from actors.errors import ErrorClass, ModelCallFailed
from actors.models import Completed, Delta, Failed, Generate, ModelRequest, ModelResult, StreamEvent
from runtime import ActorRuntimeError, Registry, receive_soon

__all__ = ["FAILOVER_NAME", "ModelsClient"]

FAILOVER_NAME: Final = "failover"
"""The failover supervisor's registry name."""

EVENTS_BUFFER: Final = 1024
"""Deltas a slow caller may fall behind before the supervisor waits for it."""

DELIVERY_TIMEOUT_S: Final = 5.0


class ModelsClient:
    """Sends `Generate` to the failover supervisor found in `registry`."""

    def __init__(self, registry: Registry, name: str = FAILOVER_NAME) -> None:
        self.registry = registry
        self.name = name

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """The answer's events; leaving the block early aborts the request."""
        send, receive = trio.open_memory_channel[StreamEvent](EVENTS_BUFFER)
        generate = Generate(request=request, events=send)
        with receive:
            try:
                ref = self.registry.lookup(self.name)
                await ref.ask(generate, DELIVERY_TIMEOUT_S)
            except ActorRuntimeError as exc:
                send.close()
                unavailable = Failed(
                    kind=ErrorClass.SERVER_ERROR,
                    retryable=True,
                    message=f"the models supervisor is not available: {exc}",
                )
                async with aclosing(_single(unavailable)) as single:
                    yield single
                return
            try:
                async with aclosing(_events(receive)) as events:
                    yield events
            finally:
                generate.scope.cancel()  # a no-op once the answer is complete

    async def complete(self, request: ModelRequest) -> ModelResult:
        """The whole answer.

        Raises:
            ModelCallFailed: every route failed; it carries the attempt trail.
        """
        async with self.stream(request) as events:
            async for event in events:
                if isinstance(event, Completed):
                    return event.result
                if isinstance(event, Failed):
                    raise ModelCallFailed(
                        event.kind, event.message, event.attempts, partial=event.partial
                    )
        raise AssertionError("a model stream always ends with Completed or Failed")


async def _single(event: StreamEvent) -> AsyncGenerator[StreamEvent, None]:
    yield event


async def _events(
    receive: trio.MemoryReceiveChannel[StreamEvent],
) -> AsyncGenerator[StreamEvent, None]:
    partial = ""
    while True:
        try:
            event = await receive_soon(receive)
        except trio.EndOfChannel:
            break
        yield event
        if isinstance(event, Delta):
            partial += event.text
        elif isinstance(event, Completed | Failed):
            return
    yield Failed(
        kind=ErrorClass.STREAM_CUT,
        message="the models supervisor stopped before the answer was complete",
        partial=partial,
        retryable=True,
    )
