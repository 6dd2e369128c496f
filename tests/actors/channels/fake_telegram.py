"""A fake Telegram Bot API: a real HTTP/1.1 server on loopback (trio + h11).

Routes, under `/bot<token>/` (GET query string, form or JSON body, like Telegram):

* `getUpdates`: confirms (forgets) the updates below `offset`, then answers the
  pending ones at once, or waits up to `timeout` seconds on trio's clock for
  one to be pushed, then answers `[]`;
* `sendMessage`: records the body (`sent`); 400 for an empty text or one over
  4096 UTF-16 code units, as Telegram does;
* `sendChatAction`: records the body (`actions`).

A wrong token gets 401 `{"ok": false, "error_code": 401, "description": "Unauthorized"}`,
an unknown method 404. Faults on cue: `fail_next(method, status, retry_after)`
answers the next call of `method` with that error (429 with
`parameters.retry_after`), `drop_next(method)` closes the connection of the
next call of `method` without an answer (a network blip), and
`stall_next_poll()` makes the next getUpdates never answer (until the client
closes the connection).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

import h11
import trio

__all__ = ["Call", "FakeTelegram"]

RECEIVE_BYTES: Final = 65_536
MAX_TEXT_UNITS: Final = 4096
WAIT_TIMEOUT_S: Final = 600.0
"""The default budget of `wait_for` (virtual seconds). Generous: on a loaded
machine loopback I/O can stall past the clock's autojump threshold, and each
such stall jumps virtual time to the next timer (a typing refresh, a poll)."""

_DESCRIPTIONS: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True)
class Call:
    """One Bot API call the fake answered (or stalled)."""

    method: str
    body: dict[str, Any]
    at: float
    """trio.current_time() when the request was read."""
    status: int = 200
    """The status answered (0: the connection was closed without an answer)."""


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    description: str | None


@dataclass
class FakeTelegram:
    """The fake server and its Python API for tests."""

    token: str = "123456:TEST-TOKEN"
    first_update_id: int = 5000
    port: int = 0
    updates: list[dict[str, Any]] = field(default_factory=list)
    """Every update pushed, confirmed or not."""
    sent: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    offsets: list[int | None] = field(default_factory=list)
    """The `offset` of every getUpdates, in order (None when absent)."""
    get_updates_calls: int = 0
    polls_in_flight: int = 0
    confirmed_below: int = 0
    _next_id: int = 0
    _next_message_id: int = 1
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)
    _stalls: int = 0
    _drops: dict[str, int] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self._next_id = self.first_update_id

    # -- the test's side -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The `api_base` to configure."""
        return f"http://127.0.0.1:{self.port}"

    def _notify(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_for(
        self, predicate: Callable[[], bool], *, timeout_s: float = WAIT_TIMEOUT_S
    ) -> None:
        """Wait (on trio's clock) until `predicate()` holds; re-checked on every call served."""
        with trio.fail_after(timeout_s):
            while not predicate():
                await self._changed.wait()

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (its `update_id` is assigned); returns the id."""
        update_id = self._next_id
        self._next_id += 1
        self.updates.append({"update_id": update_id, **update})
        self._notify()
        return update_id

    def message(
        self,
        chat_id: int,
        *,
        text: str | None = None,
        user_id: int | None = None,
        username: str | None = None,
        chat_type: str = "private",
        **extra: Any,
    ) -> dict[str, Any]:
        """A Message object as Telegram sends it."""
        sender_id = chat_id if user_id is None else user_id
        sender: dict[str, Any] = {"id": sender_id, "is_bot": False, "first_name": "Test"}
        if username is not None:
            sender["username"] = username
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "Test"
            if username is not None:
                chat["username"] = username
        else:
            chat["title"] = "A group"
        message: dict[str, Any] = {
            "message_id": self._next_message_id,
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
            **extra,
        }
        self._next_message_id += 1
        if text is not None:
            message["text"] = text
        return message

    def push_text(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        chat_type: str = "private",
    ) -> int:
        """Queue a text message (`user_id` defaults to `chat_id`); returns its update_id."""
        message = self.message(
            chat_id, text=text, user_id=user_id, username=username, chat_type=chat_type
        )
        return self.push_update({"message": message})

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with an error."""
        queue = self._failures.setdefault(method, [])
        queue.extend(_Failure(status, retry_after, description) for _ in range(times))

    def drop_next(self, method: str, times: int = 1) -> None:
        """Close the connection of the next `times` calls of `method` without answering."""
        self._drops[method] = self._drops.get(method, 0) + times

    def stall_next_poll(self, times: int = 1) -> None:
        """The next getUpdates call(s) never answer."""
        self._stalls += times

    def forget_confirmations(self) -> None:
        """As if no offset had reached Telegram: every update is pending again."""
        self.confirmed_below = 0

    def pending(self) -> list[int]:
        """The ids of the updates not confirmed yet."""
        return [u["update_id"] for u in self.updates if u["update_id"] >= self.confirmed_below]

    def texts(self, chat_id: int | None = None) -> list[str]:
        """The texts of the messages sent (to `chat_id`)."""
        return [m["text"] for m in self.sent if chat_id is None or m["chat_id"] == chat_id]

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (a free port) until cancelled; reports the port."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while True:
                    incoming = await _receive(conn, stream)
                    if incoming is None:
                        return
                    request, body = incoming
                    keep = await self._route(conn, stream, request, body)
                    if not keep or conn.our_state is not h11.DONE:
                        return
                    if conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError):
            return

    async def _route(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, body: bytes
    ) -> bool:
        target = request.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            await _send(conn, stream, 404, _error(404))
            return True
        token, method = parts[0][3:], parts[1]
        params = _params(request, body, query)
        now = trio.current_time()
        if token != self.token:
            self.calls.append(Call(method, params, now, 401))
            self._notify()
            await _send(conn, stream, 401, _error(401))
            return True
        if self._drops.get(method):
            self._drops[method] -= 1
            self.calls.append(Call(method, params, now, 0))
            self._notify()
            return False  # closed without a response
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            self.calls.append(Call(method, params, now, failure.status))
            self._notify()
            await _send(
                conn,
                stream,
                failure.status,
                _error(failure.status, failure.retry_after, failure.description),
            )
            return True
        match method:
            case "getUpdates":
                return await self._get_updates(conn, stream, params, now)
            case "sendMessage":
                status, answer = self._send_message(params)
            case "sendChatAction":
                self.actions.append(params)
                status, answer = 200, {"ok": True, "result": True}
            case _:
                status, answer = 404, _error(404)
        self.calls.append(Call(method, params, now, status))
        self._notify()
        await _send(conn, stream, status, answer)
        return True

    def _send_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = params.get("text")
        if "chat_id" not in params:
            return 400, _error(400, description="Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return 400, _error(400, description="Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_UNITS:
            return 400, _error(400, description="Bad Request: message is too long")
        self.sent.append(params)
        message = {
            "message_id": self._next_message_id,
            "from": {"id": 1, "is_bot": True, "first_name": "Bot", "username": "fake_bot"},
            "chat": {"id": params["chat_id"], "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        self._next_message_id += 1
        return 200, {"ok": True, "result": message}

    async def _get_updates(
        self, conn: h11.Connection, stream: trio.SocketStream, params: dict[str, Any], now: float
    ) -> bool:
        self.get_updates_calls += 1
        offset = params.get("offset")
        offset = int(offset) if offset is not None else None
        self.offsets.append(offset)
        if offset is not None:
            self.confirmed_below = max(self.confirmed_below, offset)
        self.calls.append(Call("getUpdates", params, now))
        self.polls_in_flight += 1
        self._notify()
        try:
            if self._stalls:
                self._stalls -= 1
                while await stream.receive_some(RECEIVE_BYTES):
                    pass
                return False
            limit = int(params.get("limit", 100))
            deadline = now + float(params.get("timeout", 0))
            while True:
                changed = self._changed
                pending = [u for u in self.updates if u["update_id"] >= self.confirmed_below]
                if pending or trio.current_time() >= deadline:
                    break
                with trio.move_on_at(deadline):
                    await changed.wait()
        finally:
            self.polls_in_flight -= 1
            self._notify()
        await _send(conn, stream, 200, {"ok": True, "result": pending[:limit]})
        return True


def _error(
    status: int, retry_after: int | None = None, description: str | None = None
) -> dict[str, Any]:
    text = description or _DESCRIPTIONS.get(status, HTTPStatus(status).phrase)
    body: dict[str, Any] = {
        "ok": False,
        "error_code": status,
        "description": text.format(retry_after=retry_after),
    }
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return body


def _params(request: h11.Request, body: bytes, query: str) -> dict[str, Any]:
    """Parameters as Telegram takes them: query string, then form or JSON body."""
    params: dict[str, Any] = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    headers = {name.lower(): value for name, value in request.headers}
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    if body and "json" in content_type:
        loaded = json.loads(body)
        if isinstance(loaded, dict):
            params.update(loaded)
    elif body:
        form = urllib.parse.parse_qs(body.decode("utf-8"))
        params.update({k: v[-1] for k, v in form.items()})
    return params


async def _receive(
    conn: h11.Connection, stream: trio.SocketStream
) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(RECEIVE_BYTES))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, bytes(body)
        else:
            return None


async def _send(
    conn: h11.Connection, stream: trio.SocketStream, status: int, obj: dict[str, Any]
) -> None:
    data = json.dumps(obj).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
    for event in (
        h11.Response(status_code=status, headers=headers),
        h11.Data(data=data),
        h11.EndOfMessage(),
    ):
        out = conn.send(event)
        if out:
            await stream.send_all(out)
