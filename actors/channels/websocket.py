"""The WebSocket gateway: JSON frames over trio-websocket.

Frames::

    req   {"type":"req","id":"1","method":"chat.send","params":{...}}
    res   {"type":"res","id":"1","ok":true,"payload":{...}}
          {"type":"res","id":"1","ok":false,"error":{"code":"...","message":"...","retryable":false}}
    event {"type":"event","event":"chat","seq":7,"payload":{...}}

The first request must be `connect` (with `params.token` when a token is
configured: a wrong one gets `unauthorized` and close 1008). Then:

* `chat.send {session, text, idempotency_key?}` -> `{run_id}`, followed by
  `chat` events `{run_id, session, state, text, model, attempts, usage, error}`
  with state `delta`, then one of `final`, `error`, `aborted`. A resent
  `chat.send` with the same `idempotency_key` (within `idempotency_ttl_s`)
  starts nothing: it gets the same run id, and the events from then on (the
  `final` again if the run is over);
* `chat.abort {run_id}`, `chat.history {session, limit}`, `sessions.list`,
  `sessions.reset {session}`, `health`, `status` (the live actor tree).

A `session` is a full key (`main:ws:alice`) or a name (`alice`, meaning
`main:ws:alice`). Bad JSON, an unknown method or bad params get an error `res`
(`id` null when it could not be read) and the connection stays up. A frame
over `max_frame_bytes` closes the connection with 1009. Each connection has a
bounded send queue (`send_queue` frames): a client that cannot keep up is
disconnected with 1013 rather than slowing anyone else. Runs belong to the
gateway, not to a connection: a client that goes away does not lose the
answer, which is still written to the session.

While draining, new connections are closed at once (1012, reason
`shutting_down`) and `chat.send` gets
`shutting_down` (retryable); runs in flight finish, or get an `error` event
with code `shutdown` at the drain deadline.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from actors.channels.gateway import SHUTTING_DOWN_CODE, Gateway, client_token
from actors.errors import InvalidSessionKey
from actors.sessions.messages import TurnResult, new_run_id, validate_key
from runtime import ChildContext, ChildSpec, NodeKind, ShuttingDown, receive_soon

__all__ = [
    "DEFAULT_AGENT",
    "WEBSOCKET_NAME",
    "WebSocketGateway",
    "session_key_for",
    "websocket_spec",
]

log = logging.getLogger("callboard.websocket")

WEBSOCKET_NAME: Final = "websocket"
DEFAULT_AGENT: Final = "main"
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_SERVICE_RESTART: Final = 1012
CLOSE_TRY_LATER: Final = 1013
HANDSHAKE_TIMEOUT_S: Final = 10.0
CLOSE_HANDSHAKE_TIMEOUT_S: Final = 5.0
HISTORY_MAX: Final = 1000
_STORE_TIMEOUT_S: Final = 30.0


def session_key_for(session: str) -> str:
    """A full session key for a `session` param (a name means `main:ws:<name>`)."""
    key = session if ":" in session else f"{DEFAULT_AGENT}:ws:{session}"
    return validate_key(key)


# -- frames -----------------------------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectParams(_Params):
    token: str | None = None
    client: str | None = Field(default=None, max_length=200)


class ChatSendParams(_Params):
    session: str = Field(min_length=1, max_length=256)
    text: str = Field(min_length=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class ChatAbortParams(_Params):
    run_id: str = Field(min_length=1)


class ChatHistoryParams(_Params):
    session: str = Field(min_length=1, max_length=256)
    limit: int = Field(default=50, ge=1, le=HISTORY_MAX)


class SessionParams(_Params):
    session: str = Field(min_length=1, max_length=256)


class NoParams(_Params):
    pass


PARAMS: Final[dict[str, type[_Params]]] = {
    "connect": ConnectParams,
    "chat.send": ChatSendParams,
    "chat.abort": ChatAbortParams,
    "chat.history": ChatHistoryParams,
    "sessions.list": NoParams,
    "sessions.reset": SessionParams,
    "health": NoParams,
    "status": NoParams,
}


class FrameError(Exception):
    """A request that cannot be served; becomes an error `res`."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def _params_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "params"
    return f"params.{where}: {first['msg']}"


# -- runs -----------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    """A chat run and the connections listening to it."""

    run_id: str
    session: str
    listeners: set[Connection] = field(default_factory=set)
    result: TurnResult | None = None


@dataclass
class _Remembered:
    run: _Run
    expires_at: float


class WebSocketGateway:
    """The WebSocket server: connections, runs, idempotency keys.

    Args:
        gateway: the channels' shared state.
        token: the client token (None: no token required).
    """

    def __init__(self, gateway: Gateway, token: str | None) -> None:
        self.gateway = gateway
        self.config = gateway.config.gateway
        self.token = token
        self.connections: set[Connection] = set()
        self.runs: dict[str, _Run] = {}
        self.idempotency: dict[str, _Remembered] = {}
        self.nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._emptied = trio.Event()

    # -- the server ------------------------------------------------------------------------

    async def serve(self, ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        """Listen until asked to stop, then close every connection (1001)."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            server = await nursery.start(
                lambda task_status: serve_websocket(
                    self._handle,
                    self.config.bind,
                    self.config.ws_port,
                    None,
                    handler_nursery=nursery,
                    max_message_size=self.config.max_frame_bytes,
                    connect_timeout=HANDSHAKE_TIMEOUT_S,
                    disconnect_timeout=CLOSE_HANDSHAKE_TIMEOUT_S,
                    task_status=task_status,
                )
            )
            self.gateway.addresses["websocket"] = f"ws://{self.config.bind}:{server.port}"
            task_status.started()
            await ctx.wait_stop_requested()
            for connection in list(self.connections):
                connection.close_soon(CLOSE_GOING_AWAY, "the gateway is stopping")
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT_S):
                while self.connections:
                    self._emptied = trio.Event()
                    await self._emptied.wait()
            nursery.cancel_scope.cancel()

    async def _handle(self, request: WebSocketRequest) -> None:
        # Refusals are a close right after the handshake, not an HTTP rejection:
        # every client library surfaces a close code, not all clean up a rejection.
        if self.gateway.draining:
            ws = await request.accept()
            await ws.aclose(CLOSE_SERVICE_RESTART, SHUTTING_DOWN_CODE)
            return
        if len(self.connections) >= self.config.max_connections:
            ws = await request.accept()
            await ws.aclose(CLOSE_TRY_LATER, "too many connections")
            return
        ws = await request.accept()
        connection = Connection(self, ws, next(self._ids))
        self.connections.add(connection)
        self.gateway.counters["ws_connections"] += 1
        try:
            await connection.serve()
        finally:
            self.connections.discard(connection)
            if not self.connections:
                self._emptied.set()

    # -- runs ---------------------------------------------------------------------------------

    def _remembered(self, key: str) -> _Run | None:
        now = trio.current_time()
        if len(self.idempotency) > 0 and next(iter(self.idempotency.values())).expires_at <= now:
            for stale in [k for k, v in self.idempotency.items() if v.expires_at <= now]:
                del self.idempotency[stale]
        remembered = self.idempotency.get(key)
        return remembered.run if remembered is not None else None

    def start_run(self, connection: Connection, params: ChatSendParams) -> tuple[_Run, bool]:
        """A run for `chat.send`; (run, True) when the idempotency key names an earlier one."""
        if params.idempotency_key is not None:
            earlier = self._remembered(params.idempotency_key)
            if earlier is not None:
                earlier.listeners.add(connection)
                return earlier, True
        self.gateway.check_accepting()
        key = session_key_for(params.session)
        run = _Run(new_run_id(), key, {connection})
        if params.idempotency_key is not None:
            self.idempotency[params.idempotency_key] = _Remembered(
                run, trio.current_time() + self.config.idempotency_ttl_s
            )
        self.runs[run.run_id] = run
        assert self.nursery is not None
        self.nursery.start_soon(self._run, run, params.text, connection.client)
        return run, False

    async def _run(self, run: _Run, text: str, sender: str | None) -> None:
        async def on_delta(piece: str) -> None:
            self._broadcast(run, {"state": "delta", "text": piece})

        try:
            result = await self.gateway.run_turn(
                channel=WEBSOCKET_NAME,
                session_key=run.session,
                text=text,
                sender=sender,
                run_id=run.run_id,
                on_delta=on_delta,
            )
        except ShuttingDown:
            result = TurnResult(
                run_id=run.run_id,
                state="error",
                error_code=SHUTTING_DOWN_CODE,
                error="the gateway is shutting down",
                retryable=True,
            )
        run.result = result
        self.runs.pop(run.run_id, None)
        self._broadcast(run, final_payload(result))
        if result.state == "final":
            self.gateway.sent(WEBSOCKET_NAME, run.session, result)

    def _broadcast(self, run: _Run, payload: dict[str, Any]) -> None:
        body = {"run_id": run.run_id, "session": run.session, **payload}
        for connection in list(run.listeners):
            connection.event("chat", body)

    def abort(self, run_id: str) -> bool:
        return self.gateway.abort(run_id)


def final_payload(result: TurnResult) -> dict[str, Any]:
    """The `chat` event that ends a run."""
    payload: dict[str, Any] = {"state": result.state, "text": result.text}
    if result.model is not None:
        payload["model"] = result.model
    if result.attempts:
        payload["attempts"] = [a.model_dump(exclude_defaults=True) for a in result.attempts]
    if result.usage is not None:
        payload["usage"] = result.usage.model_dump()
    if result.command is not None:
        payload["command"] = result.command
    if result.state == "error":
        payload["error"] = {
            "code": result.error_code or "error",
            "message": result.error or "",
            "retryable": result.retryable,
        }
    return payload


class Connection:
    """One client: reads requests, answers them, and queues its outgoing frames."""

    def __init__(self, server: WebSocketGateway, ws: WebSocketConnection, number: int) -> None:
        self.server = server
        self.ws = ws
        self.number = number
        self.client: str | None = None
        self.connected = False
        self._seq = 0
        self._send, self._queue = trio.open_memory_channel[str](server.config.send_queue)
        self._scope = trio.CancelScope()
        self._close: tuple[int, str] | None = None

    # -- writing ------------------------------------------------------------------------------

    def _frame(self, frame: dict[str, Any]) -> None:
        try:
            self._send.send_nowait(json.dumps(frame, separators=(",", ":")))
        except trio.WouldBlock:
            # A client that cannot keep up is dropped, not waited for.
            log.warning("websocket client %d is too slow; disconnecting", self.number)
            self.close_soon(CLOSE_TRY_LATER, "too slow: the send queue is full")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def event(self, name: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        self._frame({"type": "event", "event": name, "seq": self._seq, "payload": payload})

    def reply(self, request_id: object, payload: dict[str, Any]) -> None:
        self._frame({"type": "res", "id": request_id, "ok": True, "payload": payload})

    def error(self, request_id: object, error: FrameError) -> None:
        self._frame(
            {
                "type": "res",
                "id": request_id,
                "ok": False,
                "error": {
                    "code": error.code,
                    "message": error.message,
                    "retryable": error.retryable,
                },
            }
        )

    def close_soon(self, code: int, reason: str) -> None:
        """Close with `code` (after what is already queued, when possible)."""
        if self._close is None:
            self._close = (code, reason)
        self._send.close()
        if code == CLOSE_TRY_LATER:
            self._scope.cancel()  # do not wait for a client that does not read

    async def _writer(self) -> None:
        async with self._queue:
            while True:
                try:
                    frame = await receive_soon(self._queue)
                except trio.EndOfChannel:
                    break
                await self.ws.send_message(frame)
        code, reason = self._close or (CLOSE_GOING_AWAY, "")
        await self.ws.aclose(code, reason)

    # -- reading -------------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    try:
                        await self._read_loop()
                    finally:
                        self._send.close()
        except ConnectionClosed:
            pass
        finally:
            for run in self.server.runs.values():
                run.listeners.discard(self)
            if self._close is not None and self._close[0] == CLOSE_TRY_LATER:
                with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT_S) as cleanup:
                    cleanup.shield = True
                    with contextlib.suppress(ConnectionClosed):
                        await self.ws.aclose(*self._close)

    async def _read_loop(self) -> None:
        while True:
            try:
                text = await self.ws.get_message()
            except ConnectionClosed:
                return
            await self._request(text)
            if self._close is not None:
                return

    async def _request(self, text: str | bytes) -> None:
        holder: list[object] = [None]  # the request id, once it could be read
        try:
            method, params = self._parse(text, holder)
            await self._dispatch(holder[0], method, params)
        except FrameError as exc:
            self.error(holder[0], exc)
        except InvalidSessionKey as exc:
            self.error(holder[0], FrameError("bad_params", f"params.session: {exc}"))

    @staticmethod
    def _parse(text: str | bytes, holder: list[object]) -> tuple[str, _Params]:
        """(method, params) of a request frame; `holder[0]` gets its id as soon as known."""
        try:
            frame = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FrameError("bad_json", f"the frame is not JSON: {exc}") from None
        if not isinstance(frame, dict):
            raise FrameError("bad_request", "the frame is not a JSON object")
        request_id = frame.get("id")
        holder[0] = request_id if isinstance(request_id, str | int) else None
        if frame.get("type") != "req":
            raise FrameError("bad_request", "type: expected 'req'")
        if holder[0] is None:
            raise FrameError("bad_request", "id: a string or a number is required")
        method = frame.get("method")
        model = PARAMS.get(method) if isinstance(method, str) else None
        if model is None or not isinstance(method, str):
            raise FrameError("unknown_method", f"method: unknown method {method!r}")
        raw = frame.get("params", {})
        try:
            return method, model.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            raise FrameError("bad_params", _params_problem(exc)) from None

    async def _dispatch(self, request_id: object, method: str, params: _Params) -> None:
        if method == "connect":
            assert isinstance(params, ConnectParams)
            token = self.server.token
            if token is not None and not hmac.compare_digest(
                (params.token or "").encode(), token.encode()
            ):
                self.error(request_id, FrameError("unauthorized", "a valid token is required"))
                self.close_soon(CLOSE_POLICY, "unauthorized")
                return
            self.connected = True
            self.client = params.client
            self.reply(request_id, {"server": "callboard", "protocol": 1})
            return
        if not self.connected:
            raise FrameError("not_connected", "the first request must be connect")
        handler: Callable[[object, Any], Any] = getattr(self, "_" + method.replace(".", "_"))
        await handler(request_id, params)

    # -- methods ---------------------------------------------------------------------------------

    async def _chat_send(self, request_id: object, params: ChatSendParams) -> None:
        try:
            run, duplicate = self.server.start_run(self, params)
        except ShuttingDown:
            raise FrameError(
                SHUTTING_DOWN_CODE, "the gateway is shutting down", retryable=True
            ) from None
        self.reply(
            request_id, {"run_id": run.run_id, "session": run.session, "duplicate": duplicate}
        )
        if duplicate and run.result is not None:
            self.event(
                "chat", {"run_id": run.run_id, "session": run.session, **final_payload(run.result)}
            )

    async def _chat_abort(self, request_id: object, params: ChatAbortParams) -> None:
        self.reply(request_id, {"aborted": self.server.abort(params.run_id)})

    async def _chat_history(self, request_id: object, params: ChatHistoryParams) -> None:
        key = session_key_for(params.session)
        records = await self.server.gateway.manager.history(key, params.limit)
        messages = [
            {k: r[k] for k in ("role", "content", "turn", "ts", "model", "run_id") if k in r}
            for r in records
        ]
        self.reply(request_id, {"session": key, "messages": messages})

    async def _sessions_list(self, request_id: object, params: NoParams) -> None:
        entries = await self.server.gateway.manager.list()
        self.reply(
            request_id,
            {
                "sessions": [
                    {
                        "key": e.key,
                        "session_id": e.session_id,
                        "turns": e.turns,
                        "updated_at": e.updated_at,
                        "model": e.model_pin or e.last_model,
                    }
                    for e in entries
                ]
            },
        )

    async def _sessions_reset(self, request_id: object, params: SessionParams) -> None:
        self.server.gateway.check_accepting()
        key = session_key_for(params.session)
        entry = await self.server.gateway.manager.reset(key)
        self.reply(request_id, {"session": key, "session_id": entry.session_id})

    async def _health(self, request_id: object, params: NoParams) -> None:
        gateway = self.server.gateway
        self.reply(
            request_id,
            {
                "ok": True,
                "draining": gateway.draining,
                "connections": len(self.server.connections),
                "runs": len(gateway.runs),
            },
        )

    async def _status(self, request_id: object, params: NoParams) -> None:
        gateway = self.server.gateway
        system = gateway.running_system
        snapshot = system.snapshot()
        self.reply(
            request_id,
            {
                "tree": snapshot.to_dict() if snapshot is not None else None,
                "in_flight": system.inflight.by_kind(),
                "connections": len(self.server.connections),
                "draining": gateway.draining,
                "counters": dict(gateway.counters),
            },
        )


def websocket_spec(gateway: Gateway, *, shutdown_s: float) -> ChildSpec:
    """The child spec of the WebSocket gateway.

    Raises (when started):
        GatewayConfigError: bound beyond loopback without a token.
    """

    async def run(ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        token = client_token(gateway.config.gateway, gateway.env)
        await WebSocketGateway(gateway, token).serve(ctx, task_status=task_status)

    return ChildSpec(name=WEBSOCKET_NAME, start=run, shutdown_s=shutdown_s, kind=NodeKind.WORKER)
