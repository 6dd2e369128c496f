"""A real daemon tree in the test's trio run: config from TOML text, real actors."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio
import trio.testing

from actors.app import Handles, announce_gateway, attach_gateway, build_tree
from actors.channels.gateway import Gateway
from actors.config import LoadedConfig, parse_config
from actors.failover.client import ModelsClient
from actors.models import ChatMessage, Completed, Delta, Failed, ModelRequest, StreamEvent
from actors.plugins import load_plugins
from actors.sessions.manager import SessionManager
from runtime import ActorSystem

AUTOJUMP_WITH_IO_S: Final = 0.1
"""MockClock threshold for tests with real sockets: virtual time jumps only after
this much *real* time with every task blocked, so loopback I/O in flight is never
mistaken for idleness."""


def io_clock() -> trio.testing.MockClock:
    """A MockClock for tests that also do real (loopback) I/O."""
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP_WITH_IO_S)


@dataclass
class Daemon:
    """A running tree: its system and a models client."""

    system: ActorSystem
    client: ModelsClient
    loaded: LoadedConfig
    sessions: SessionManager
    gateway: Gateway

    async def ask(self, text: str, **fields: object) -> list[StreamEvent]:
        """One request; every event it produced."""
        request = ModelRequest(messages=(ChatMessage(role="user", content=text),), **fields)  # type: ignore[arg-type]
        events: list[StreamEvent] = []
        async with self.client.stream(request) as stream:
            async for event in stream:
                events.append(event)
        return events


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def completed(events: list[StreamEvent]) -> Completed:
    last = events[-1]
    assert isinstance(last, Completed), f"expected Completed, got {last!r}"
    return last


def failed(events: list[StreamEvent]) -> Failed:
    last = events[-1]
    assert isinstance(last, Failed), f"expected Failed, got {last!r}"
    return last


def trail(events: list[StreamEvent]) -> list[tuple[str, str | None, str]]:
    """(model, profile, reason) of every attempt of the request."""
    last = events[-1]
    attempts = last.result.attempts if isinstance(last, Completed) else last.attempts  # type: ignore[union-attr]
    return [(a.model, a.profile, a.reason) for a in attempts]


def load(toml: str, state_dir: Path) -> LoadedConfig:
    """A config from TOML text; unless it says otherwise, the channels listen on free ports."""
    data = tomllib.loads(toml)
    gateway = data.setdefault("gateway", {})
    gateway.setdefault("ws_port", 0)
    gateway.setdefault("http_port", 0)
    return LoadedConfig(Path("test.toml"), parse_config(data, "test.toml"), state_dir)


async def _run(system: ActorSystem, spec: object, *, task_status: trio.TaskStatus[None]) -> None:
    await system.run(spec, handle_signals=False, task_status=task_status)  # type: ignore[arg-type]


@asynccontextmanager
async def daemon(
    toml: str, state_dir: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Daemon]:
    """Start the tree `callboard run` would start for `toml`; stop it gracefully after."""
    loaded = load(toml, state_dir)
    handles = Handles()
    tree, _ = build_tree(loaded, handles, env=env or {})
    system = ActorSystem(
        shutdown_grace_s=loaded.config.gateway.shutdown_grace_s,
        hook_timeout_s=loaded.config.hooks.timeout_s,
    )
    load_plugins(loaded).attach(system.hooks)
    assert handles.gateway is not None
    attach_gateway(system, handles.gateway)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(_run, system, tree.spec))
        announce_gateway(system, handles.gateway)
        sessions = SessionManager(system.registry, handles.sessions, loaded.config)
        yield Daemon(system, ModelsClient(system.registry), loaded, sessions, handles.gateway)
        system.request_stop("test over")
