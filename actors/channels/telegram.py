"""The Telegram channel: the Bot API over one `httpx.AsyncClient`, by long polling.

**Polling.** The channel calls `getUpdates` with `offset` (the last handled
`update_id` + 1), `timeout = poll_timeout_s` and `allowed_updates = ["message"]`.
Each attempt has a read budget of `poll_timeout_s + POLL_MARGIN_S` (a trio
scope). Around the whole poll runs a **stall watchdog**: when getUpdates gives
no response at all for `stall_s` (time spent honouring a `retry_after` does not
count; a `stall_s` not above `poll_timeout_s` would cut healthy long polls, so
`poll_timeout_s + POLL_MARGIN_S` is used instead, with a warning), a warning
is logged, the HTTP client is reopened and polling starts again;
`gateway.counters["telegram_poll_restarts"]` counts these restarts.
A poll that fails after its retries (network down, 401, 409...) is logged and
tried again after a growing pause (`POLL_BACKOFF_MIN_S` to `POLL_BACKOFF_MAX_S`):
a network blip never crashes the channel.

**Offset durability.** Updates are handled one at a time, in order, and the
next getUpdates is only sent once the whole batch is handled (the offset sent
to Telegram *confirms* updates, so nothing is confirmed before it is handled).
An update counts as handled once its turn was handed to its session and came
back (`gateway.run_turn` returned, whatever its state): the offset is then
written to `<state_dir>/telegram/offset.json` atomically (temp file, fsync,
rename, fsync of the directory) *before* the reply is sent and before the next
update. A restart reads it back, so an update is neither lost nor run twice:
a crash between the write and the reply loses that reply (the transcript
has it), never repeats the turn. Updates skipped by policy advance the offset
too. A missing or unreadable offset file falls back to Telegram's own default
(the earliest unconfirmed update), which is safe for the same reason. The
price of this order is that a slow turn in one chat delays the other chats;
that is accepted for exactness (the sessions themselves are concurrent).

**What is answered.** Only private chats (`chat.type == "private"`) with a
`text` are handled; group, supergroup and channel messages and non-text
messages (stickers, photos...) are skipped. The session key is
`<agent>:telegram:dm:<chat id>`. `dm_policy`:

* `disabled`: nothing is answered (every update is skipped);
* `allowlist`: only users whose id, or `@username` (case-insensitive), is in
  `allow_from`; anyone else gets one polite refusal per user per process
  lifetime (`REFUSAL`), then silence;
* `open`: everyone.

**A turn.** While it runs, `sendChatAction` "typing" is sent every
`typing_interval_s` (in a task cancelled when the turn ends; one attempt each,
failures only logged). The reply is `result.text` for a `final` result (chat
commands such as `/status` come back as final results too), a short apology
naming the error for an `error` result, nothing for `aborted`. It is sent as
plain text (no parse mode), split under `MAX_MESSAGE_CHARS` (counted in UTF-16
code units, as Telegram does) at paragraph, else line, else space boundaries,
else cut hard; the first part quotes the user's message. A delivered `final`
answer is then reported with `gateway.sent` (`message:sent`), as on the other
channels.

**Bot API calls** are retried with tenacity (`retries` extra attempts, sleeping
on trio's clock): a 429 waits at least its `parameters.retry_after`; a 5xx, a
timeout or a network error waits a short exponential backoff. Any other 4xx is
not retried: it is logged with the method and Telegram's description. Every
httpx or OS error is translated into `TelegramError` at one place (`BotApi`),
with the token redacted; the token is never logged (a filter on the `httpx`
logger redacts it from httpx's own request lines).

**Stopping.** When `gateway.intake_stopped` is set (a graceful stop began),
polling stops: the poll in flight is cancelled, the update being handled
finishes, the rest of its batch is left unconfirmed (Telegram sends it again
after the restart). When the supervisor asks the child to stop, the current
update is finished within the stop budget, then the child returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import tenacity
import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.channels.gateway import Gateway
from actors.config import TelegramConfig
from actors.durable import set_aside, write_atomic
from actors.errors import InvalidSessionKey, TelegramError, TelegramSetupError, TelegramTokenMissing
from actors.sessions.messages import TurnResult
from runtime import ChildContext, ChildSpec, NodeKind, ShuttingDown

__all__ = [
    "MAX_MESSAGE_CHARS",
    "TELEGRAM_NAME",
    "BotApi",
    "OffsetStore",
    "error_reply",
    "split_message",
    "telegram_spec",
    "utf16_len",
]

log = logging.getLogger("callboard.telegram")

TELEGRAM_NAME: Final = "telegram"

MAX_MESSAGE_CHARS: Final = 4096
"""Telegram's limit on one message's text, in UTF-16 code units."""

POLL_MARGIN_S: Final = 10.0
"""getUpdates' read budget is `poll_timeout_s` plus this (Telegram answers at the timeout)."""

POLL_BACKOFF_MIN_S: Final = 1.0
POLL_BACKOFF_MAX_S: Final = 60.0
"""The pause after a failed poll, doubling with each failure in a row, within these bounds."""

RETRY_BASE_S: Final = 0.5
RETRY_MAX_S: Final = 8.0
"""The exponential backoff between attempts of one call (429 waits its retry_after instead)."""

ERROR_DETAIL_CHARS: Final = 300
"""The longest error detail quoted to the user."""

OFFSET_VERSION: Final = 1

REFUSAL: Final = (
    "Sorry — this bot only answers the people on its allowlist. "
    "(Your Telegram user id is {user_id}.)"
)
"""Sent once per user and process lifetime to a user not allowed by `dm_policy = "allowlist"`."""

_RETRYABLE_STATUS_MIN: Final = 500
_TOO_MANY_REQUESTS: Final = 429
_REDACTED: Final = "<token>"
_PARAGRAPH: Final = "\n\n"


# -- errors -------------------------------------------------------------------------------------


# -- message splitting --------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """The length of `text` as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _fitting_prefix(text: str, limit: int) -> int:
    """The length (in str characters) of the longest prefix of `text` within `limit` units."""
    units = 0
    for index, char in enumerate(text[: limit + 1]):  # every character is at least one unit
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return min(len(text), limit + 1)


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Cut `text` into parts of at most `limit` UTF-16 units, at the best boundary.

    A part ends at the last paragraph break ("\\n\\n") that fits, else the last
    line break, else the last space, else it is cut hard. The separator at a
    cut is dropped (Telegram trims messages anyway); parts with no visible text
    are left out.

    Args:
        text: the whole reply.
        limit: the most UTF-16 code units of one part.

    Returns:
        The parts, in order (empty when `text` is blank).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        fit = _fitting_prefix(rest, limit)
        for separator in (_PARAGRAPH, "\n", " "):
            # A separator may begin right after the part that fits: it is dropped.
            cut = rest.rfind(separator, 0, fit + len(separator))
            if cut > 0:
                parts.append(rest[:cut])
                rest = rest[cut + len(separator) :]
                break
        else:
            cut = max(fit, 1)
            parts.append(rest[:cut])
            rest = rest[cut:]
    parts.append(rest)
    return [part for part in parts if part.strip()]


def error_reply(result: TurnResult) -> str:
    """The short message a user gets for an `error` result."""
    code = result.error_code or "error"
    detail = (result.error or "").strip()
    if len(detail) > ERROR_DETAIL_CHARS:
        detail = detail[: ERROR_DETAIL_CHARS - 1] + "…"
    what = f"{code}: {detail}" if detail else code
    again = " Please try again." if result.retryable else ""
    return f"Sorry — I could not answer that ({what}).{again}"


# -- the offset file ----------------------------------------------------------------------------


def _offset_of(data: Any) -> int:
    offset = data["offset"]
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise TypeError(f"offset is {offset!r}, not an integer")
    return offset


class OffsetStore:
    """The next `update_id` to ask for, kept in a JSON file written atomically.

    Args:
        path: the file (`<state_dir>/telegram/offset.json`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> int | None:
        if not self.path.exists():
            return None
        try:
            offset = _offset_of(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = set_aside(self.path)
            log.warning(
                "telegram: %s is unreadable (%s); moved aside to %s, polling from "
                "Telegram's earliest unconfirmed update",
                self.path,
                exc,
                aside.name,
            )
            return None
        return offset

    def _write(self, offset: int) -> None:
        payload = {"version": OFFSET_VERSION, "offset": offset, "last_update_id": offset - 1}
        write_atomic(self.path, json.dumps(payload).encode())

    async def load(self) -> int | None:
        """The persisted offset; None when there is none (or it was unreadable)."""
        return await trio.to_thread.run_sync(self._read)

    async def save(self, offset: int) -> None:
        """Persist `offset` durably; not cancellable once begun (the write completes)."""
        await trio.to_thread.run_sync(self._write, offset)


# -- the Bot API --------------------------------------------------------------------------------


class _RedactToken(logging.Filter):
    """Removes the bot token from log records (httpx logs request URLs at INFO)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg = message.replace(self.token, _REDACTED)
            record.args = None
        return True


Heartbeat = Callable[[float], None]
"""Told each time a call gets an answer (0) or is about to wait before a retry (the wait)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TelegramError) and exc.retryable


def _wait(state: tenacity.RetryCallState) -> float:
    """A 429's retry_after (at least), else an exponential backoff."""
    backoff = min(RETRY_BASE_S * 2.0 ** (state.attempt_number - 1), RETRY_MAX_S)
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    if isinstance(exc, TelegramError) and exc.retry_after_s is not None:
        return max(exc.retry_after_s, 0.0)
    return backoff


def _check_api_base(api_base: str) -> str:
    """`api_base` without a trailing slash, once known to be an http(s) URL.

    Raises:
        TelegramSetupError: it is not (checked before the token is added to it).
    """
    try:
        url = httpx.URL(api_base)
    except httpx.InvalidURL as exc:
        raise TelegramSetupError(f"telegram: api_base {api_base!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise TelegramSetupError(
            f"telegram: api_base {api_base!r} must be an http:// or https:// URL"
        )
    return api_base.rstrip("/")


class BotApi:
    """The Bot API over one reused `httpx.AsyncClient` (`{api_base}/bot{token}/<method>`).

    Every httpx or OS error, every timeout and every `ok: false` answer becomes a
    `TelegramError` here, with the token redacted.

    Args:
        api_base: e.g. `https://api.telegram.org`.
        token: the bot token.
        retries: extra attempts after a retryable failure.
    """

    def __init__(self, api_base: str, token: str, *, retries: int) -> None:
        self.api_base = _check_api_base(api_base)
        self._token = token
        self.retries = retries
        self._client: httpx.AsyncClient | None = None
        self._filter = _RedactToken(token)

    def redact(self, text: str) -> str:
        """`text` without the token."""
        return text.replace(self._token, _REDACTED) if self._token else text

    def _new_client(self) -> httpx.AsyncClient:
        # No httpx timeouts: every budget is a trio scope around the call.
        return httpx.AsyncClient(
            base_url=f"{self.api_base}/bot{self._token}/", timeout=httpx.Timeout(None)
        )

    async def __aenter__(self) -> BotApi:
        logging.getLogger("httpx").addFilter(self._filter)
        self._client = self._new_client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._client is not None:
                with trio.CancelScope(shield=True):
                    await self._client.aclose()
                self._client = None
        finally:
            logging.getLogger("httpx").removeFilter(self._filter)

    async def reopen(self) -> None:
        """Close the client (and its connections) and open a new one."""
        old, self._client = self._client, self._new_client()
        if old is not None:
            await old.aclose()

    async def call_once(self, method: str, payload: dict[str, Any], *, timeout_s: float) -> Any:
        """One attempt; its `result`.

        Raises:
            TelegramError: every failure, with `retryable` set as it should.
        """
        client = self._client
        if client is None:
            raise RuntimeError("BotApi is not open")
        response: httpx.Response | None = None
        with trio.move_on_after(timeout_s):
            try:
                response = await client.post(method, json=payload)
            except (httpx.HTTPError, OSError) as exc:
                detail = self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                raise TelegramError(method, detail, retryable=True) from None
        if response is None:
            raise TelegramError(method, f"no response within {timeout_s:g} s", retryable=True)
        return self._result(method, response)

    def _result(self, method: str, response: httpx.Response) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TelegramError(
                method,
                f"unreadable answer (HTTP {status})",
                status=status,
                retryable=status >= _RETRYABLE_STATUS_MIN,
            )
        if body.get("ok") is True and status < httpx.codes.BAD_REQUEST:
            return body.get("result")
        code = body.get("error_code")
        code = code if isinstance(code, int) else status
        description = str(body.get("description") or f"HTTP {status}")
        parameters = body.get("parameters")
        retry_after: float | None = None
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            retry_after = float(parameters["retry_after"])
        retryable = code == _TOO_MANY_REQUESTS or code >= _RETRYABLE_STATUS_MIN
        raise TelegramError(
            method,
            self.redact(description),
            status=code,
            retry_after_s=retry_after,
            retryable=retryable,
        )

    async def call(
        self,
        method: str,
        payload: dict[str, Any],
        *,
        timeout_s: float,
        retries: int | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> Any:
        """A call with retries (429 after its retry_after, 5xx/timeouts/network after a backoff).

        Args:
            method: the Bot API method.
            payload: its parameters (sent as JSON).
            timeout_s: the budget of each attempt.
            retries: extra attempts (default: the configured `retries`).
            heartbeat: told of every answer and every wait (the stall watchdog).

        Raises:
            TelegramError: the last failure (not retryable, or out of attempts).
        """
        extra = self.retries if retries is None else retries

        async def attempt() -> Any:
            try:
                result = await self.call_once(method, payload, timeout_s=timeout_s)
            except TelegramError as exc:
                if heartbeat is not None and exc.status is not None:
                    heartbeat(0.0)
                raise
            if heartbeat is not None:
                heartbeat(0.0)
            return result

        def before_sleep(state: tenacity.RetryCallState) -> None:
            wait_s = state.upcoming_sleep
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            log.warning(
                "telegram: %s; attempt %d of %d, the next in %.1f s",
                exc,
                state.attempt_number,
                extra + 1,
                wait_s,
            )
            if heartbeat is not None:
                heartbeat(wait_s)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(extra + 1),
            wait=_wait,
            retry=tenacity.retry_if_exception(_retryable),
            sleep=trio.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(attempt)


# -- updates ------------------------------------------------------------------------------------


class _Tg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TgUser(_Tg):
    id: int
    is_bot: bool = False
    username: str | None = None


class TgChat(_Tg):
    id: int
    type: str


class TgMessage(_Tg):
    message_id: int
    sender: TgUser | None = Field(default=None, alias="from")
    chat: TgChat
    text: str | None = None


class TgUpdate(_Tg):
    update_id: int
    message: TgMessage | None = None


@dataclass(frozen=True, slots=True)
class _Dm:
    """A private text message to answer."""

    update_id: int
    chat_id: int
    message_id: int
    user: TgUser
    text: str


def _parse_updates(result: Any) -> list[TgUpdate]:
    if not isinstance(result, list):
        raise TelegramError("getUpdates", f"result is not a list: {type(result).__name__}")
    updates: list[TgUpdate] = []
    for item in result:
        try:
            updates.append(TgUpdate.model_validate(item))
        except ValidationError:
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if isinstance(update_id, int):
                updates.append(TgUpdate(update_id=update_id))  # skipped, but counted
            else:
                log.warning("telegram: an update without an update_id was ignored")
    return sorted(updates, key=lambda u: u.update_id)


def _allowed(user: TgUser, allow_from: Iterable[int | str]) -> bool:
    username = f"@{user.username}".lower() if user.username else None
    for entry in allow_from:
        if isinstance(entry, int):
            if entry == user.id:
                return True
        elif entry.startswith("@"):
            if username is not None and entry.lower() == username:
                return True
        elif entry.strip().lstrip("-").isdigit() and int(entry) == user.id:
            return True
    return False


Verdict = Literal["answer", "skip", "refuse"]


# -- the channel --------------------------------------------------------------------------------


class TelegramChannel:
    """One incarnation of the channel: polls, hands updates to sessions, replies.

    Args:
        gateway: the channels' shared state.
        api: the open Bot API client.
        offsets: where the offset is kept.
        offset: the offset read at start (None: Telegram's default).
        refused: users already refused (kept across restarts of the child).
    """

    def __init__(
        self,
        gateway: Gateway,
        api: BotApi,
        offsets: OffsetStore,
        offset: int | None,
        refused: set[int],
    ) -> None:
        self.gateway = gateway
        self.config: TelegramConfig = gateway.config.channels.telegram
        self.api = api
        self.offsets = offsets
        self.offset = offset
        self.refused = refused
        self.stopping = False
        self._fetch_scope: trio.CancelScope | None = None
        self._watchdog: trio.CancelScope | None = None
        self._failures = 0
        self.stall_s = effective_stall_s(self.config)

    # -- stopping ---------------------------------------------------------------------------

    def stop_polling(self, why: str) -> None:
        """Fetch no more updates; the update in hand (if any) is finished."""
        if not self.stopping:
            log.info("telegram: polling stops (%s)", why)
        self.stopping = True
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()

    async def _watch_intake(self) -> None:
        await self.gateway.intake_stopped.wait()
        self.stop_polling("intake stopped")

    async def run(self, ctx: ChildContext) -> None:
        """Poll and handle updates until stopped."""
        ctx.on_stop_requested(lambda: self.stop_polling("stop requested"))
        if self.gateway.draining:
            self.stop_polling("the daemon is draining")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_intake)
            while not self.stopping:
                updates = await self._fetch()
                await self._handle_batch(updates)
            await ctx.wait_stop_requested()
            nursery.cancel_scope.cancel()

    # -- polling ----------------------------------------------------------------------------

    async def _fetch(self) -> list[TgUpdate]:
        """One poll: the new updates, or none (stopped, stalled, or failed and paused)."""
        with trio.CancelScope() as scope:
            self._fetch_scope = scope
            if self.stopping:
                scope.cancel()
            try:
                return await self._poll_or_pause()
            finally:
                self._fetch_scope = None
        return []

    async def _poll_or_pause(self) -> list[TgUpdate]:
        try:
            updates = await self._poll()
        except TelegramError as exc:
            failure = exc
        else:
            self._failures = 0
            return updates
        self._failures += 1
        self.gateway.counters["telegram_poll_errors"] += 1
        pause_s = min(POLL_BACKOFF_MIN_S * 2.0 ** (self._failures - 1), POLL_BACKOFF_MAX_S)
        log.error("telegram: polling failed: %s; trying again in %g s", failure, pause_s)
        await trio.sleep(pause_s)
        return []

    def _feed_watchdog(self, extra_s: float) -> None:
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.deadline = max(watchdog.deadline, trio.current_time() + extra_s + self.stall_s)

    async def _poll(self) -> list[TgUpdate]:
        cfg = self.config
        payload: dict[str, Any] = {"timeout": cfg.poll_timeout_s, "allowed_updates": ["message"]}
        if self.offset is not None:
            payload["offset"] = self.offset
        result: Any = None
        with trio.CancelScope(deadline=trio.current_time() + self.stall_s) as watchdog:
            self._watchdog = watchdog
            try:
                result = await self.api.call(
                    "getUpdates",
                    payload,
                    timeout_s=cfg.poll_timeout_s + POLL_MARGIN_S,
                    heartbeat=self._feed_watchdog,
                )
            finally:
                self._watchdog = None
        if watchdog.cancelled_caught:
            self.gateway.counters["telegram_poll_restarts"] += 1
            log.warning(
                "telegram: getUpdates gave no response for %g s (stall_s); restarting polling",
                self.stall_s,
            )
            await self.api.reopen()
            return []
        updates = _parse_updates(result)
        if result and not updates:
            raise TelegramError("getUpdates", "no readable update in the answer")
        return updates

    # -- handling ---------------------------------------------------------------------------

    async def _handle_batch(self, updates: list[TgUpdate]) -> None:
        for update in updates:
            if self.stopping:
                return  # left unconfirmed: Telegram sends it again after the restart
            if self.offset is not None and update.update_id < self.offset:
                continue  # handled already
            self.gateway.counters["telegram_updates"] += 1
            await self._handle(update)

    async def _commit(self, update_id: int) -> None:
        self.offset = update_id + 1
        await self.offsets.save(self.offset)

    def _verdict(self, dm: _Dm) -> Verdict:
        policy = self.config.dm_policy
        if policy == "open":
            return "answer"
        if policy == "allowlist" and _allowed(dm.user, self.config.allow_from):
            return "answer"
        if policy == "allowlist" and dm.user.id not in self.refused:
            return "refuse"
        return "skip"

    async def _handle(self, update: TgUpdate) -> None:
        dm = _as_dm(update)
        if dm is None:
            self.gateway.counters["telegram_skipped"] += 1
            log.debug("telegram: update %d skipped (not a private text message)", update.update_id)
            await self._commit(update.update_id)
            return
        verdict = self._verdict(dm)
        if verdict != "answer":
            self.gateway.counters["telegram_skipped"] += 1
            log.info(
                "telegram: update %d from user %d not answered (dm_policy %s)",
                dm.update_id,
                dm.user.id,
                self.config.dm_policy,
            )
            await self._commit(dm.update_id)
            if verdict == "refuse":
                self.refused.add(dm.user.id)
                self.gateway.counters["telegram_refused"] += 1
                await self._send(dm.chat_id, REFUSAL.format(user_id=dm.user.id), None)
            return
        if self.gateway.draining:
            self.stop_polling("intake stopped")
            return  # not handled: left unconfirmed
        key = f"{self.config.agent}:telegram:dm:{dm.chat_id}"
        try:
            result: TurnResult | InvalidSessionKey = await self._turn(key, dm)
        except ShuttingDown:
            self.stop_polling("intake stopped")
            return  # not handled: left unconfirmed
        except InvalidSessionKey as exc:
            result = exc
        await self._commit(dm.update_id)
        if isinstance(result, InvalidSessionKey):
            log.error("telegram: update %d skipped: %s", dm.update_id, result)
            return
        await self._reply(key, dm, result)

    async def _turn(self, key: str, dm: _Dm) -> TurnResult:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._typing, dm.chat_id)
            result = await self.gateway.run_turn(
                channel=TELEGRAM_NAME, session_key=key, text=dm.text, sender=str(dm.user.id)
            )
            nursery.cancel_scope.cancel()
        return result

    async def _typing(self, chat_id: int) -> None:
        payload = {"chat_id": chat_id, "action": "typing"}
        while True:
            try:
                await self.api.call(
                    "sendChatAction", payload, timeout_s=self.config.request_timeout_s, retries=0
                )
            except TelegramError as exc:
                log.debug("telegram: typing not shown: %s", exc)
            await trio.sleep(self.config.typing_interval_s)

    async def _reply(self, key: str, dm: _Dm, result: TurnResult) -> None:
        if result.state == "aborted":
            return
        final = result.state == "final"
        text = result.text if final else error_reply(result)
        if await self._send(dm.chat_id, text, dm.message_id):
            self.gateway.counters["telegram_replies"] += 1
            if final:  # `message:sent` is for answers, as on the other channels
                self.gateway.sent(TELEGRAM_NAME, key, result)

    async def _send(self, chat_id: int, text: str, reply_to: int | None) -> bool:
        """Send `text` in parts; False (logged) when a part could not be delivered."""
        parts = split_message(text)
        if not parts:
            log.info("telegram: an empty reply to chat %d was not sent", chat_id)
            return False
        for index, part in enumerate(parts):
            payload: dict[str, Any] = {"chat_id": chat_id, "text": part}
            if index == 0 and reply_to is not None:
                payload["reply_parameters"] = {
                    "message_id": reply_to,
                    "allow_sending_without_reply": True,
                }
            failure = await self._send_part(payload)
            if failure is not None:
                self.gateway.counters["telegram_send_failures"] += 1
                log.error(
                    "telegram: reply to chat %d not delivered (part %d of %d): %s",
                    chat_id,
                    index + 1,
                    len(parts),
                    failure,
                )
                return False
        return True

    async def _send_part(self, payload: dict[str, Any]) -> TelegramError | None:
        try:
            await self.api.call("sendMessage", payload, timeout_s=self.config.request_timeout_s)
        except TelegramError as exc:
            return exc
        return None


def effective_stall_s(config: TelegramConfig) -> float:
    """The stall watchdog's duration: `stall_s`, unless it would cut healthy long polls.

    A healthy getUpdates answers after up to `poll_timeout_s`; a `stall_s` not
    above that would restart every quiet poll, so `poll_timeout_s +
    POLL_MARGIN_S` is used instead (with a warning).
    """
    if config.stall_s > config.poll_timeout_s:
        return config.stall_s
    fallback = config.poll_timeout_s + POLL_MARGIN_S
    log.warning(
        "telegram: stall_s (%g s) is not above poll_timeout_s (%d s); the watchdog uses %g s",
        config.stall_s,
        config.poll_timeout_s,
        fallback,
    )
    return fallback


def _as_dm(update: TgUpdate) -> _Dm | None:
    message = update.message
    if message is None or message.chat.type != "private" or message.text is None:
        return None
    if message.sender is None or message.sender.is_bot:
        return None
    return _Dm(update.update_id, message.chat.id, message.message_id, message.sender, message.text)


def telegram_spec(gateway: Gateway, *, shutdown_s: float) -> ChildSpec:
    """The child spec of the Telegram channel (a worker).

    Args:
        gateway: the channels' shared state (config, state dir, counters).
        shutdown_s: how long the child may take to finish its update once asked to stop.

    The child fails to start with `TelegramTokenMissing` when the token
    variable is not set, and with `TelegramSetupError` when `api_base` is not
    an http(s) URL.
    """
    refused: set[int] = set()  # users refused once, for the life of the process

    async def run(ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        cfg = gateway.config.channels.telegram
        token = gateway.env.get(cfg.token_env, "").strip()
        if not token:
            raise TelegramTokenMissing(cfg.token_env)
        offsets = OffsetStore(gateway.loaded.state_dir / TELEGRAM_NAME / "offset.json")
        offset = await offsets.load()
        async with BotApi(cfg.api_base, token, retries=cfg.retries) as api:
            channel = TelegramChannel(gateway, api, offsets, offset, refused)
            gateway.addresses[TELEGRAM_NAME] = api.api_base
            log.info(
                "telegram: polling %s (dm_policy %s, offset %s)",
                api.api_base,
                cfg.dm_policy,
                "Telegram's default" if offset is None else offset,
            )
            task_status.started()
            await channel.run(ctx)

    return ChildSpec(name=TELEGRAM_NAME, start=run, shutdown_s=shutdown_s, kind=NodeKind.WORKER)
