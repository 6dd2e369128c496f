"""The registry of actors by name."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from runtime import ActorNotFound, ActorRef, DeadLetters, Mailbox, MailboxSpec, NameTaken, Registry


def ref(name: str, dead: DeadLetters) -> ActorRef[object]:
    return ActorRef(Mailbox(name, MailboxSpec(), dead))


def test_register_lookup_unregister() -> None:
    dead = DeadLetters()
    registry = Registry(dead)
    a = ref("a", dead)
    registry.register("a", a)
    registry.register("a", a)  # the same ref again is fine
    assert registry.lookup("a") is a
    assert registry.get("a") is a and "a" in registry and len(registry) == 1
    with pytest.raises(NameTaken, match="an actor is already registered as 'a'"):
        registry.register("a", ref("a", dead))
    registry.unregister("a", ref("a", dead))  # not the holder: ignored
    assert registry.names() == ["a"]
    registry.unregister("a")
    with pytest.raises(ActorNotFound, match="no actor registered as 'a'"):
        registry.lookup("a")
    assert registry.get("a") is None and list(registry) == []


async def test_tell_to_an_unknown_name_is_a_dead_letter(autojump_clock: MockClock) -> None:
    dead = DeadLetters()
    registry = Registry(dead)
    await registry.tell("ghost", "hello")
    assert dead.counts() == {"no_such_actor": 1}
    assert dead.recent()[0].recipient == "ghost"
    a = ref("a", dead)
    registry.register("a", a)
    await registry.tell("a", "hi")
    assert a.depth == 1
