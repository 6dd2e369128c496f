"""Actors by name.

A supervisor registers an actor child under its name when the child's spec asks
for it and removes it when the child is gone for good; restarts keep the entry,
because the `ActorRef` points at the mailbox, which outlives incarnations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runtime.actor import ActorRef
from runtime.deadletters import DeadLetterReason, DeadLetters
from runtime.errors import ActorNotFound, NameTaken

__all__ = ["Registry"]


class Registry:
    """A name → `ActorRef` map with dead letters for names nobody holds.

    Args:
        dead_letters: where `tell` to an unknown name is counted.
    """

    __slots__ = ("_dead_letters", "_refs")

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._refs: dict[str, ActorRef[Any]] = {}
        self._dead_letters = dead_letters

    def register(self, name: str, ref: ActorRef[Any]) -> None:
        """Register `ref` as `name`.

        Raises:
            NameTaken: another ref is registered under `name`.
        """
        held = self._refs.get(name)
        if held is not None and held is not ref:
            raise NameTaken(name)
        self._refs[name] = ref

    def unregister(self, name: str, ref: ActorRef[Any] | None = None) -> None:
        """Forget `name` (only if it still maps to `ref`, when given)."""
        held = self._refs.get(name)
        if held is not None and (ref is None or held is ref):
            del self._refs[name]

    def lookup(self, name: str) -> ActorRef[Any]:
        """The ref registered as `name`.

        Raises:
            ActorNotFound: nothing is registered under `name`.
        """
        ref = self._refs.get(name)
        if ref is None:
            raise ActorNotFound(name)
        return ref

    def get(self, name: str) -> ActorRef[Any] | None:
        """The ref registered as `name`, or None."""
        return self._refs.get(name)

    async def tell(self, name: str, message: object) -> None:
        """Tell the actor registered as `name`; an unknown name is a dead letter."""
        ref = self._refs.get(name)
        if ref is None:
            self._dead_letters.record(name, message, DeadLetterReason.NO_SUCH_ACTOR)
            return
        await ref.tell(message)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._refs)

    def __contains__(self, name: object) -> bool:
        return name in self._refs

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._refs))

    def __len__(self) -> int:
        return len(self._refs)
