"""Builds the supervision tree of `callboard run` from the config.

`build_tree` returns a `TreePlan`: the root's `ChildSpec` for the actor system,
and a description of every node that `callboard check` prints before anything
starts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from actors.config import LoadedConfig, SupervisionConfig
from runtime import (
    ActorSystem,
    ChildSpec,
    NodeKind,
    SupervisorRef,
    supervisor_spec,
)

__all__ = ["TreePlan", "build_tree", "run_daemon"]

log = logging.getLogger("callboard.app")


@dataclass(frozen=True, slots=True)
class TreePlan:
    """One node of the tree `run` would start, with the spec that starts it."""

    name: str
    kind: NodeKind
    detail: str
    spec: ChildSpec = field(compare=False, repr=False)
    children: tuple[TreePlan, ...] = ()

    def render(self, indent: str = "") -> str:
        """The planned tree as indented lines."""
        lines = [f"{indent}{self.name} [{self.kind.value}] {self.detail}".rstrip()]
        lines.extend(child.render(indent + "  ") for child in self.children)
        return "\n".join(lines)


def _describe(table: SupervisionConfig, *, dynamic: bool = False) -> str:
    backoff = (
        f", backoff {table.backoff_min_s:g}-{table.backoff_max_s:g} s"
        if table.backoff_min_s
        else ""
    )
    return (
        f"{'dynamic, ' if dynamic else ''}{table.strategy.value}, "
        f"max {table.max_restarts} restarts in {table.within_s:g} s{backoff}, "
        f"children stop within {table.shutdown_s:g} s"
    )


def _supervisor(
    name: str,
    table: SupervisionConfig,
    children: tuple[TreePlan, ...],
    *,
    dynamic: bool = False,
    handle: SupervisorRef | None = None,
) -> TreePlan:
    spec = supervisor_spec(
        name,
        table.policy(),
        [child.spec for child in children],
        dynamic=dynamic,
        shutdown_s=math.inf,
        handle=handle,
    )
    return TreePlan(name, NodeKind.SUPERVISOR, _describe(table, dynamic=dynamic), spec, children)


@dataclass(frozen=True, slots=True)
class Handles:
    """Stable handles on the tree's supervisors, for the parts that add children."""

    sessions: SupervisorRef = field(default_factory=lambda: SupervisorRef("sessions"))


def build_tree(loaded: LoadedConfig, handles: Handles | None = None) -> TreePlan:
    """The supervision tree of DESIGN.md for this config."""
    handles = handles or Handles()
    sup = loaded.config.supervision
    sessions = _supervisor("sessions", sup.sessions, (), dynamic=True, handle=handles.sessions)
    channels = _supervisor("channels", sup.channels, ())
    return _supervisor("root", sup.root, (sessions, channels))


async def run_daemon(loaded: LoadedConfig) -> int:
    """Run the daemon until SIGTERM/SIGINT; returns the process exit code."""
    config = loaded.config
    system = ActorSystem(
        shutdown_grace_s=config.gateway.shutdown_grace_s,
        hook_timeout_s=config.hooks.timeout_s,
    )
    plan = build_tree(loaded)
    log.info("callboard starting (config %s, state %s)", loaded.path, loaded.state_dir)
    return await system.run(plan.spec)
