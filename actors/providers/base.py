"""Provider actors: one per `[providers.<id>]`, each wrapping a wire-format backend.

A provider actor receives `ProviderCall`s and runs each in its own task (its
nursery), so calls proceed concurrently; the answer goes back on the call's
own channel as `ProviderDelta`s and one `ProviderDone` or `ProviderFailed`.
Every failure is already a classified `ModelError` when it leaves the actor.
The caller cancels a call with the call's `scope`.

Keys never leave the actor: calls name an auth *profile* (the key variable's
name), and the backend looks the key up.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from actors.config import ProviderConfig
from actors.errors import ErrorClass, ModelError
from actors.models import ProviderCall, ProviderDelta, ProviderDone, ProviderFailed
from runtime import Actor, MailboxSpec, send_soon

__all__ = [
    "PROVIDER_MAILBOX",
    "PROVIDER_PREFIX",
    "Backend",
    "Emit",
    "ProviderActor",
    "ProviderInfo",
    "provider_name",
]

log = logging.getLogger("callboard.providers")

PROVIDER_PREFIX: Final = "provider:"
PROVIDER_MAILBOX: Final = MailboxSpec(capacity=4096)

Emit = Callable[[str], Awaitable[None]]
"""Sends one piece of answer text to the caller."""


def provider_name(provider_id: str) -> str:
    """The actor (and registry) name of a provider."""
    return f"{PROVIDER_PREFIX}{provider_id}"


class Backend(ABC):
    """A wire format: turns a `ProviderCall` into answer text or a `ModelError`."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire what calls need (an HTTP client)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release it."""

    @abstractmethod
    async def call(self, call: ProviderCall, emit: Emit) -> ProviderDone:
        """Answer `call`, sending text through `emit`.

        Raises:
            ModelError: classified at this boundary.
        """


class ProviderActor(Actor[ProviderCall]):
    """Runs calls on a backend, concurrently, and reports classified outcomes.

    Args:
        provider_id: the `[providers.<id>]` name.
        backend: built afresh on every (re)start.
    """

    background = True
    drain_background = True  # calls in flight finish within the stop budget

    def __init__(self, provider_id: str, backend: Callable[[], Backend]) -> None:
        self.provider_id = provider_id
        self._make_backend = backend
        self.backend: Backend | None = None

    async def on_start(self) -> None:
        self.backend = self._make_backend()
        await self.backend.open()

    async def receive(self, message: ProviderCall) -> object:
        self.nursery.start_soon(self._run, message)
        return None

    async def _run(self, call: ProviderCall) -> None:
        backend = self.backend
        assert backend is not None
        events = call.events

        async def emit(text: str) -> None:
            await send_soon(events, ProviderDelta(text=text))

        async with events:
            with call.scope:
                outcome: ProviderDone | ProviderFailed
                try:
                    outcome = await backend.call(call, emit)
                except ModelError as exc:
                    outcome = ProviderFailed(error=exc)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # the caller went away
                except Exception as exc:  # a bug here must not crash every call in flight
                    log.exception("provider %s: call failed unexpectedly", self.provider_id)
                    outcome = ProviderFailed(
                        error=ModelError(
                            ErrorClass.SERVER_ERROR,
                            f"{self.provider_id}: internal error {type(exc).__name__}: {exc}",
                        )
                    )
                try:
                    await send_soon(events, outcome)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    async def on_stop(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What the failover supervisor knows of a started provider.

    Attributes:
        id: the `[providers.<id>]` name.
        config: its table.
        profiles: auth profile ids (key variable names) whose keys are set;
            `(None,)` for keyless providers.
        accepts_prefill: continues a trailing assistant message.
    """

    id: str
    config: ProviderConfig
    profiles: tuple[str | None, ...]
    accepts_prefill: bool

    @property
    def actor(self) -> str:
        """The provider actor's registry name."""
        return provider_name(self.id)
