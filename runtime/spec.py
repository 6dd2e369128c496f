"""What a supervisor needs to know about a child, and what a child sees of itself.

A `ChildSpec` says how to start a child, when to restart it and how long it
may take to stop. The child's start function receives a `ChildContext`: its
name, its mailbox (for actors), the system's services and its stop request.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from runtime.errors import InvalidPolicy

if TYPE_CHECKING:
    from runtime.deadletters import DeadLetters
    from runtime.hooks import HookBus
    from runtime.inflight import InflightTracker
    from runtime.mailbox import Mailbox, MailboxSpec, Reply
    from runtime.registry import Registry

__all__ = [
    "DEFAULT_SHUTDOWN_S",
    "ChildContext",
    "ChildShutdown",
    "ChildSpec",
    "ChildState",
    "NodeKind",
    "NodeSnapshot",
    "Restart",
    "Snapshottable",
    "StartFn",
    "SystemServices",
]

DEFAULT_SHUTDOWN_S: Final = 5.0
"""How long a worker gets to stop before it is cancelled, unless its spec says."""


class ChildShutdown(Exception):
    """Raise it to exit with reason *shutdown*: transient and temporary children stay down."""


class Restart(StrEnum):
    """When a supervisor restarts a child that exited (Erlang/OTP restart types)."""

    PERMANENT = "permanent"
    """Always restarted."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (an exception)."""
    TEMPORARY = "temporary"
    """Never restarted; forgotten once it exits."""


class NodeKind(StrEnum):
    """What a node of the supervision tree is."""

    SUPERVISOR = "supervisor"
    ACTOR = "actor"
    WORKER = "worker"


class ChildState(StrEnum):
    """Where a child is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node of the live supervision tree, as seen at one moment."""

    name: str
    kind: NodeKind
    state: ChildState
    restarts: int
    mailbox_depth: int | None
    children: tuple[NodeSnapshot, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the snapshot (children nested)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "state": self.state.value,
            "restarts": self.restarts,
            "mailbox_depth": self.mailbox_depth,
            "children": [child.to_dict() for child in self.children],
        }

    def render(self, indent: str = "") -> str:
        """The tree as indented text lines, one node a line."""
        depth = "" if self.mailbox_depth is None else f" mailbox={self.mailbox_depth}"
        lines = [
            f"{indent}{self.name} [{self.kind.value}] {self.state.value}"
            f" restarts={self.restarts}{depth}"
        ]
        lines.extend(child.render(indent + "  ") for child in self.children)
        return "\n".join(lines)


class Snapshottable(Protocol):
    """Something that can describe its subtree (a supervisor)."""

    def snapshot(self) -> NodeSnapshot: ...


@dataclass(frozen=True, slots=True)
class SystemServices:
    """The shared services every child can reach through its context."""

    registry: Registry
    dead_letters: DeadLetters
    hooks: HookBus
    inflight: InflightTracker


class StartFn(Protocol):
    """A child's body: set up, call `task_status.started()`, then run until done.

    Returning on its own is a *normal* exit; returning after a stop request, or
    raising `ChildShutdown`, is a *shutdown*; any other exception is *abnormal*.
    """

    def __call__(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None]
    ) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start a child and how to treat its exits.

    Attributes:
        name: unique among the supervisor's children.
        start: the child's body (see `StartFn`).
        restart: permanent, transient or temporary.
        shutdown_s: after a stop request, how long before the child is cancelled.
            `math.inf` waits for ever (the default for supervisors).
        kind: worker, actor or supervisor (for snapshots and counting).
        mailbox: actors get a mailbox of this spec, owned by the supervisor so
            that it survives restarts.
        register: put the child's `ActorRef` in the registry under `name`.
    """

    name: str
    start: StartFn
    restart: Restart = Restart.PERMANENT
    shutdown_s: float = DEFAULT_SHUTDOWN_S
    kind: NodeKind = NodeKind.WORKER
    mailbox: MailboxSpec | None = None
    register: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidPolicy("child.name", self.name, "a non-empty string")
        if not (self.shutdown_s >= 0 or math.isinf(self.shutdown_s)):
            raise InvalidPolicy(f"{self.name}.shutdown_s", self.shutdown_s, "a number >= 0")
        if self.register and self.mailbox is None:
            raise InvalidPolicy(f"{self.name}.register", True, "a child with a mailbox")


class ChildContext:
    """What a running child knows about itself; one per child, kept across restarts.

    Attributes:
        name: the child's name within its supervisor.
        path: the names from the root down to this child, joined by '/'.
        mailbox: the actor's mailbox (None for plain workers and supervisors).
        services: registry, dead letters, hook bus, in-flight tracker.
        node: set by a supervisor child to itself, so snapshots can descend.
        current: the `(message, reply)` an actor is handling right now.
    """

    __slots__ = (
        "_stop_callbacks",
        "_stop_event",
        "current",
        "mailbox",
        "name",
        "node",
        "path",
        "services",
        "stop_final",
        "stop_requested",
    )

    def __init__(
        self, name: str, path: str, mailbox: Mailbox | None, services: SystemServices
    ) -> None:
        self.name = name
        self.path = path
        self.mailbox = mailbox
        self.services = services
        self.node: Snapshottable | None = None
        self.current: tuple[Any, Reply | None] | None = None
        self.stop_requested = False
        self.stop_final = False
        self._stop_callbacks: list[Callable[[], None]] | None = None
        self._stop_event: trio.Event | None = None

    def reset_for_start(self) -> None:
        """Clear the stop request and per-run state before a (re)start."""
        self.stop_requested = False
        self.stop_final = False
        self.node = None
        self.current = None
        self._stop_callbacks = None
        self._stop_event = None

    def on_stop_requested(self, callback: Callable[[], None]) -> None:
        """Call `callback` (synchronously) when a stop is requested; at once if it was."""
        if self.stop_requested:
            callback()
            return
        if self._stop_callbacks is None:
            self._stop_callbacks = []
        self._stop_callbacks.append(callback)

    async def wait_stop_requested(self) -> None:
        """Block until the supervisor asks this child to stop."""
        if self.stop_requested:
            await trio.lowlevel.checkpoint()
            return
        if self._stop_event is None:
            self._stop_event = trio.Event()
        await self._stop_event.wait()

    def request_stop(self, *, final: bool) -> None:
        """Ask the child to stop; `final` means it will not be restarted.

        An actor finishes the message in hand; on a final stop its mailbox is
        closed and it drains what was queued before it. Plain workers see
        `stop_requested` and `wait_stop_requested()` return.
        """
        first = not self.stop_requested
        self.stop_requested = True
        self.stop_final = self.stop_final or final
        mailbox = self.mailbox
        if mailbox is not None:
            if final:
                mailbox.close()
            else:
                mailbox.wake()
        if not first:
            return
        if self._stop_event is not None:
            self._stop_event.set()
        callbacks, self._stop_callbacks = self._stop_callbacks, None
        for callback in callbacks or ():
            callback()
