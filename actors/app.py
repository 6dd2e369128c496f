"""Builds the supervision tree of `callboard run` from the config.

`build_tree` returns a `TreePlan`: the root's `ChildSpec` for the actor system,
and a description of every node that `callboard check` prints before anything
starts.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

from actors.channels.gateway import Gateway
from actors.channels.http import HTTP_NAME, http_spec
from actors.channels.telegram import TELEGRAM_NAME, telegram_spec
from actors.channels.websocket import WEBSOCKET_NAME, websocket_spec
from actors.config import LoadedConfig, SupervisionConfig
from actors.events import GATEWAY_START, GatewayStart
from actors.failover.client import FAILOVER_NAME
from actors.failover.supervisor import FailoverActor
from actors.plugins import LoadedPlugins, load_plugins
from actors.providers.catalog import plan_providers, provider_spec
from actors.sessions.path_map import PathMap
from actors.sessions.store import STORE_NAME, FileBackend, StoreActor, StoreBackend
from runtime import (
    EXIT_FAILED,
    ActorSystem,
    ChildSpec,
    NodeKind,
    ShutdownPhase,
    SupervisorRef,
    actor_spec,
    supervisor_spec,
)

__all__ = ["Handles", "TreePlan", "announce_gateway", "attach_gateway", "build_tree", "run_daemon"]

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


@dataclass(slots=True)
class Handles:
    """Stable handles on the running tree, for the parts that need them.

    Attributes:
        sessions: the `sessions` dynamic supervisor.
        gateway: the channels' shared state (set by `build_tree`).
    """

    sessions: SupervisorRef = field(default_factory=lambda: SupervisorRef("sessions"))
    gateway: Gateway | None = None


def _providers_and_failover(
    loaded: LoadedConfig, env: Mapping[str, str]
) -> tuple[tuple[TreePlan, ...], list[str]]:
    config = loaded.config
    plan = plan_providers(config.providers, env)
    shutdown_s = config.supervision.models.shutdown_s
    nodes: list[TreePlan] = []
    for info in plan.started:
        spec = provider_spec(info, plan.keys(info.id), shutdown_s=shutdown_s)
        keys = len([p for p in info.profiles if p is not None])
        detail = f"{info.config.kind}" + (f", {keys} key{'s' if keys != 1 else ''}" if keys else "")
        nodes.append(TreePlan(info.actor, NodeKind.ACTOR, detail, spec))
    skipped = {
        note.split()[1]: note
        for note in plan.notes
        if note.startswith("provider ") and "skipped" in note
    }
    started = list(plan.started)

    def failover() -> FailoverActor:
        return FailoverActor(config, started, skipped, loaded.state_dir)

    spec = actor_spec(FAILOVER_NAME, failover, shutdown_s=shutdown_s)
    nodes.append(TreePlan(FAILOVER_NAME, NodeKind.ACTOR, "routes model requests", spec))
    return tuple(nodes), plan.notes


def build_tree(
    loaded: LoadedConfig,
    handles: Handles | None = None,
    env: Mapping[str, str] | None = None,
    store_backend: StoreBackend | None = None,
) -> tuple[TreePlan, list[str]]:
    """The supervision tree of DESIGN.md for this config, and the startup notes.

    Args:
        loaded: the config.
        handles: stable handles to fill in for the running tree.
        env: where provider keys are read (default: the process environment).
        store_backend: where sessions are kept (default: files under `[state] dir`).
    """
    handles = handles or Handles()
    config = loaded.config
    sup = config.supervision
    providers, notes = _providers_and_failover(loaded, os.environ if env is None else env)
    backend = store_backend or FileBackend(loaded.state_dir, PathMap(config.sessions.path_map))
    store_spec = actor_spec(
        STORE_NAME, lambda: StoreActor(backend, config.sessions), shutdown_s=sup.root.shutdown_s
    )
    store = TreePlan(STORE_NAME, NodeKind.ACTOR, f"sessions in {backend.location}", store_spec)
    models = _supervisor("models", sup.models, providers)
    sessions = _supervisor("sessions", sup.sessions, (), dynamic=True, handle=handles.sessions)
    gateway = handles.gateway = Gateway(loaded, handles.sessions, env)
    budget = sup.channels.shutdown_s
    gw = config.gateway
    channel_nodes = [
        TreePlan(
            HTTP_NAME,
            NodeKind.WORKER,
            f"http://{gw.bind}:{gw.http_port}",
            http_spec(gateway, shutdown_s=budget),
        )
    ]
    if config.channels.telegram.enabled:
        channel_nodes.append(
            TreePlan(
                TELEGRAM_NAME,
                NodeKind.WORKER,
                f"dm_policy {config.channels.telegram.dm_policy}",
                telegram_spec(gateway, shutdown_s=budget),
            )
        )
    channel_nodes.append(
        TreePlan(
            WEBSOCKET_NAME,
            NodeKind.WORKER,
            f"ws://{gw.bind}:{gw.ws_port}",
            websocket_spec(gateway, shutdown_s=budget),
        )
    )
    channels = _supervisor("channels", sup.channels, tuple(channel_nodes))
    return _supervisor("root", sup.root, (store, models, sessions, channels)), notes


async def run_daemon(loaded: LoadedConfig, plugins: LoadedPlugins | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; returns the process exit code.

    Args:
        loaded: the config.
        plugins: its plugins, already loaded (default: load them here).

    Raises:
        PluginError: `plugins` was not given and a plugin could not be loaded.
    """
    config = loaded.config
    if plugins is None:
        plugins = load_plugins(loaded)
    system = ActorSystem(
        shutdown_grace_s=config.gateway.shutdown_grace_s,
        hook_timeout_s=config.hooks.timeout_s,
    )
    plugins.attach(system.hooks)
    for line in plugins.describe():
        log.info("plugin %s", line)
    handles = Handles()
    plan, notes = build_tree(loaded, handles)
    log.info("callboard starting (config %s, state %s)", loaded.path, loaded.state_dir)
    for note in notes:
        log.warning("%s", note)
    gateway = handles.gateway
    assert gateway is not None
    attach_gateway(system, gateway)
    code = EXIT_FAILED

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal code
        code = await system.run(plan.spec, task_status=task_status)

    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(run)
        except RuntimeError:
            return code  # the tree did not start; `run` has logged why
        announce_gateway(system, gateway)
    return code


def attach_gateway(system: ActorSystem, gateway: Gateway) -> None:
    """Bind the channels to the system and to its stop phases."""
    gateway.attach(system)
    system.on_shutdown(ShutdownPhase.STOP_INTAKE, "gateway: stop intake", gateway.stop_intake)
    system.on_shutdown(ShutdownPhase.DRAIN, "gateway: cut runs past the deadline", gateway.cut_runs)


def announce_gateway(system: ActorSystem, gateway: Gateway) -> None:
    """`gateway:start`, once the tree (and so every channel) has started."""
    channels = tuple(
        name for name in ("http", "telegram", "websocket") if name in gateway.addresses
    )
    system.hooks.notify(
        GATEWAY_START,
        GatewayStart(channels, gateway.addresses.get("websocket"), gateway.addresses.get("http")),
    )
    for name, address in gateway.addresses.items():
        log.info("%s listening on %s", name, address)
