"""What every channel shares: the way to sessions, the runs in flight, the drain.

A channel (WebSocket, HTTP, Telegram) turns a user's message into
`Gateway.run_turn`, which is the same everywhere:

1. refused with `ShuttingDown` once intake has stopped (a graceful stop began);
2. counted in flight, so the drain waits for it;
3. `message:received`, then the session's turn, abortable by its run id, and
   cut with a `shutdown` error when the drain deadline passes;
4. `message:sending` (an interceptor may rewrite the reply or cancel it).

The channel then sends the reply and calls `sent` (`message:sent`). The stop
phases of the actor system drive `stop_intake` and `cut_runs`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import trio

from actors.config import GatewayConfig, LoadedConfig
from actors.errors import GatewayConfigError
from actors.events import (
    GATEWAY_STOP,
    MESSAGE_RECEIVED,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    GatewayStop,
    MessageReceived,
    MessageSending,
    MessageSent,
)
from actors.sessions.manager import SessionManager
from actors.sessions.messages import TurnResult, new_run_id
from runtime import ActorSystem, HookVetoed, ShuttingDown, SupervisorRef

__all__ = ["SHUTDOWN_CODE", "Gateway", "Run", "client_token", "is_loopback"]

log = logging.getLogger("callboard.gateway")

SHUTDOWN_CODE: Final = "shutdown"
SHUTTING_DOWN_CODE: Final = "shutting_down"
CANCELLED_CODE: Final = "cancelled"

OnDelta = Callable[[str], Awaitable[None]]


@dataclass
class Run:
    """A turn in flight."""

    run_id: str
    session_key: str
    channel: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    cut: bool = False


class Gateway:
    """The channels' shared state; one per daemon.

    Args:
        loaded: the config.
        sessions: the `sessions` supervisor's handle.
        env: where tokens are read (default: the process environment).
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        sessions: SupervisorRef,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.loaded = loaded
        self.env: Mapping[str, str] = os.environ if env is None else env
        """Where the channels read their tokens (the process environment by default)."""
        self.config = loaded.config
        self.sessions_ref = sessions
        self.system: ActorSystem | None = None
        self._manager: SessionManager | None = None
        self.accepting = True
        self.intake_stopped = trio.Event()
        self.runs: dict[str, Run] = {}
        self.counters: Counter[str] = Counter()
        self.addresses: dict[str, str] = {}

    def attach(self, system: ActorSystem) -> None:
        """Bind to the running system (its registry, hooks and in-flight tracker)."""
        self.system = system

    @property
    def running_system(self) -> ActorSystem:
        if self.system is None:
            raise RuntimeError("the gateway is not attached to an actor system")
        return self.system

    @property
    def manager(self) -> SessionManager:
        """The way to session actors."""
        if self._manager is None:
            self._manager = SessionManager(
                self.running_system.registry, self.sessions_ref, self.config
            )
        return self._manager

    @property
    def draining(self) -> bool:
        """True once a graceful stop began (intake stopped)."""
        return not self.accepting

    # -- the drain (driven by the actor system's phases) -----------------------------------

    async def stop_intake(self) -> None:
        """Phase `stop_intake`: refuse new connections and new turns."""
        if not self.accepting:
            return
        self.accepting = False
        self.intake_stopped.set()
        system = self.running_system
        system.hooks.notify(GATEWAY_STOP, GatewayStop(system.stop_reason or "stop", len(self.runs)))
        log.info("gateway: intake stopped, %d run(s) in flight", len(self.runs))

    async def cut_runs(self) -> None:
        """Phase `drain`, at its deadline: end the runs still going with a `shutdown` error."""
        if self.runs:
            log.warning("gateway: drain deadline passed; cutting %d run(s)", len(self.runs))
        for run in list(self.runs.values()):
            run.cut = True
            run.scope.cancel()
        system = self.running_system
        await system.inflight.wait_idle(system.phase_timeout_s)

    # -- one turn ---------------------------------------------------------------------------

    def check_accepting(self) -> None:
        """Raise `ShuttingDown` once intake has stopped."""
        if not self.accepting:
            raise ShuttingDown("new work")

    async def run_turn(
        self,
        *,
        channel: str,
        session_key: str,
        text: str,
        sender: str | None = None,
        run_id: str | None = None,
        on_delta: OnDelta | None = None,
    ) -> TurnResult:
        """One user message through its session, the way every channel does it.

        Raises:
            ShuttingDown: intake has stopped.
            InvalidSessionKey: a malformed key.
        """
        self.check_accepting()
        system = self.running_system
        run = Run(run_id or new_run_id(), session_key, channel)
        with system.inflight.track(channel):
            self.runs[run.run_id] = run
            self.counters["runs"] += 1
            try:
                system.hooks.notify(
                    MESSAGE_RECEIVED,
                    MessageReceived(channel, session_key, run.run_id, text, sender),
                )
                result = await self.manager.turn(
                    session_key,
                    text,
                    channel=channel,
                    channel_pin=self.config.channels.pins.get(channel),
                    on_delta=on_delta,
                    scope=run.scope,
                    run_id=run.run_id,
                )
            finally:
                self.runs.pop(run.run_id, None)
            if run.cut and result.state == "aborted":
                result = result.model_copy(
                    update={
                        "state": "error",
                        "error_code": SHUTDOWN_CODE,
                        "error": "the daemon is shutting down; the answer was cut",
                        "retryable": True,
                    }
                )
            if result.state == "final":
                result = await self._sending(channel, session_key, result)
        self.counters[f"runs_{result.state}"] += 1
        return result

    async def _sending(self, channel: str, session_key: str, result: TurnResult) -> TurnResult:
        hooks = self.running_system.hooks
        try:
            payload = await hooks.emit(
                MESSAGE_SENDING,
                MessageSending(
                    channel, session_key, result.run_id, result.text, result.model, result.attempts
                ),
            )
        except HookVetoed as exc:
            return result.model_copy(
                update={
                    "state": "error",
                    "error_code": CANCELLED_CODE,
                    "error": f"the reply was cancelled: {exc.reason}",
                    "retryable": False,
                }
            )
        if payload.text != result.text:
            return result.model_copy(update={"text": payload.text})
        return result

    def sent(self, channel: str, session_key: str, result: TurnResult) -> None:
        """The channel delivered `result`: `message:sent`."""
        self.running_system.hooks.notify(
            MESSAGE_SENT,
            MessageSent(
                channel, session_key, result.run_id, result.text, result.model, result.attempts
            ),
        )

    def abort(self, run_id: str) -> bool:
        """Abort a run in flight; False when there is no such run."""
        run = self.runs.get(run_id)
        if run is None:
            return False
        run.scope.cancel()
        return True


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach (`localhost`, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable


def client_token(gateway: GatewayConfig, env: Mapping[str, str]) -> str | None:
    """The client token of `[gateway] token_env` in `env` (None: unset or empty).

    Every channel that takes clients reads it here, once, when it starts.

    Raises:
        GatewayConfigError: the bind is not loopback and no token is set.
    """
    token = env.get(gateway.token_env) or None
    if token is None and not is_loopback(gateway.bind):
        raise GatewayConfigError(
            f"gateway.bind is {gateway.bind!r}, which is not a loopback address, and "
            f"${gateway.token_env} (gateway.token_env) is not set: set a token or bind "
            "to 127.0.0.1"
        )
    return token
