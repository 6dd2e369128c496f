"""The `faulty` provider: wraps another provider and injects faults on a schedule.

Each call draws the next fault from its `FaultPlan` (see `actors.faults`). Faults
that an HTTP provider would see as an error response become the same
classified `ModelError` the boundary would produce (with the status, the
retry-after and x-should-retry); connection faults become `network`; faults
in the stream act on the wrapped provider's real answer: the stream is cut,
stalls, slows down, or loses its terminator. `hang` and `stall` simply go
silent, so the failover supervisor's own first-token and idle budgets are what
end them, exactly as with a real provider.
"""

from __future__ import annotations

import math
from typing import Final

import trio

from actors.config import FaultyProviderConfig
from actors.errors import ErrorClass, ModelError
from actors.faults import Fault, FaultName, FaultPlan
from actors.models import (
    ProviderCall,
    ProviderDelta,
    ProviderDone,
    ProviderEvent,
    ProviderFailed,
)
from actors.providers.base import Backend, Emit, provider_name
from runtime import Registry

__all__ = ["FaultyBackend", "fault_error"]

_WRAPPED_BUFFER: Final = 64
_DELIVERY_TIMEOUT_S: Final = 5.0

# The class, status and detail an HTTP provider would report for each fault.
_HTTP_FAULTS: Final[dict[FaultName, tuple[ErrorClass, int | None, str]]] = {
    FaultName.RATE_LIMIT: (ErrorClass.RATE_LIMIT, 429, "rate limit reached"),
    FaultName.QUOTA: (ErrorClass.BILLING, 429, "insufficient_quota: quota exhausted"),
    FaultName.BILLING: (ErrorClass.BILLING, 402, "billing hard limit reached"),
    FaultName.AUTH: (ErrorClass.AUTH, 401, "incorrect API key"),
    FaultName.FORBIDDEN: (ErrorClass.AUTH_PERMANENT, 403, "permission denied"),
    FaultName.SERVER_ERROR: (ErrorClass.SERVER_ERROR, 500, "internal server error"),
    FaultName.OVERLOADED: (ErrorClass.OVERLOADED, 529, "overloaded"),
    FaultName.UNAVAILABLE: (ErrorClass.OVERLOADED, 503, "service unavailable"),
    FaultName.NOT_FOUND: (ErrorClass.MODEL_NOT_FOUND, 404, "model not found"),
    FaultName.CONTEXT_OVERFLOW: (ErrorClass.CONTEXT_OVERFLOW, 400, "context length exceeded"),
    FaultName.CONTENT_FILTER: (ErrorClass.CONTENT_FILTER, 400, "content policy violation"),
    FaultName.FORMAT: (ErrorClass.FORMAT, 400, "invalid request"),
    FaultName.REFUSE: (ErrorClass.NETWORK, None, "connection refused"),
    FaultName.RESET: (ErrorClass.NETWORK, None, "connection reset before the response"),
}


def fault_error(fault: Fault, provider: str) -> ModelError | None:
    """The error an immediate fault stands for, or None for faults acting on the stream."""
    known = _HTTP_FAULTS.get(fault.name)
    if known is None:
        return None
    kind, status, detail = known
    retry_after = fault.param("retry_after")
    retry_after_ms = fault.param("retry_after_ms")
    if retry_after_ms is not None:
        retry_after = retry_after_ms / 1000
    should_retry = fault.param("should_retry")
    return ModelError(
        kind,
        f"{provider}: injected fault: {detail}",
        status=status,
        retry_after_s=retry_after,
        should_retry=None if should_retry is None else should_retry > 0,
    )


class FaultyBackend(Backend):
    """Forwards calls to the wrapped provider's actor, with faults on the way.

    Args:
        provider_id: this provider's id.
        config: its table (wraps, schedule, probabilities, seed).
        registry: where the wrapped provider's actor is found.
    """

    def __init__(self, provider_id: str, config: FaultyProviderConfig, registry: Registry) -> None:
        self.provider_id = provider_id
        self.config = config
        self.registry = registry
        self.plan = FaultPlan(config.schedule, config.probabilities, config.seed)

    async def call(self, call: ProviderCall, emit: Emit) -> ProviderDone:
        fault = self.plan.next()
        if fault is not None:
            error = fault_error(fault, self.provider_id)
            if error is not None:
                raise error
            if fault.name is FaultName.HANG:
                await trio.sleep_forever()
            if fault.name is FaultName.SLOW_FIRST_TOKEN:
                await trio.sleep(fault.param("delay_s") or 0)
        return await self._relay(call, emit, fault)

    async def _relay(self, call: ProviderCall, emit: Emit, fault: Fault | None) -> ProviderDone:
        target = self.registry.lookup(provider_name(self.config.wraps))
        send, receive = trio.open_memory_channel[ProviderEvent](_WRAPPED_BUFFER)
        inner = call.model_copy(update={"events": send, "scope": trio.CancelScope()})
        after = int(fault.param("after") or 0) if fault is not None else math.inf
        delay = fault.param("delay_s") if fault and fault.name is FaultName.SLOW_TOKENS else None
        sent = 0
        try:
            await target.ask(inner, _DELIVERY_TIMEOUT_S)
            async with receive:
                async for event in receive:
                    if isinstance(event, ProviderFailed):
                        raise event.error
                    if isinstance(event, ProviderDone):
                        if fault is not None and fault.name is FaultName.NO_DONE:
                            raise ModelError(
                                ErrorClass.STREAM_CUT,
                                f"{self.provider_id}: injected fault: the stream ended "
                                "without its terminator",
                            )
                        return event
                    assert isinstance(event, ProviderDelta)
                    if fault is not None and sent >= after:
                        await self._break_stream(fault)
                    if delay:
                        await trio.sleep(delay)
                    await emit(event.text)
                    sent += 1
            raise ModelError(ErrorClass.STREAM_CUT, f"{self.config.wraps}: ended without a result")
        finally:
            inner.scope.cancel()

    async def _break_stream(self, fault: Fault) -> None:
        name = fault.name
        if name is FaultName.STALL:
            await trio.sleep_forever()
        if name is FaultName.CUT:
            raise ModelError(
                ErrorClass.STREAM_CUT, f"{self.provider_id}: injected fault: connection cut"
            )
        if name is FaultName.MALFORMED:
            raise ModelError(
                ErrorClass.STREAM_CUT, f"{self.provider_id}: injected fault: malformed SSE event"
            )
        if name is FaultName.ERROR_EVENT:
            raise ModelError(
                ErrorClass.OVERLOADED,
                f"{self.provider_id}: injected fault: error event in the stream: overloaded",
            )
