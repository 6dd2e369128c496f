"""Example plugin: tell the user when another model answered, and why.

Enable it in config.toml::

    [hooks]
    plugins = ["actors.plugins.failover_notice"]

When a reply was served after a failover, a line is added to it::

    Here is the answer...

    _(answered by openai/gpt-4o-mini: anthropic/claude-sonnet-4-5 was rate limited)_

It intercepts `message:sending`, so it reaches every channel that sends whole
replies (Telegram, a non-streamed HTTP answer) and the `final` event of the
WebSocket gateway (whose `text` is the whole reply). A streamed HTTP answer has
already gone out piece by piece, so it cannot be rewritten there. Option
`template` changes the line (`{model}` and `{why}` are filled in).

It also shows `plugin.on_model_failover`: every move to another model is
logged for the operator as it happens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from actors.events import MESSAGE_SENDING, MessageSending, ModelFailover
from actors.models import Attempt
from actors.plugins.plugin import Plugin

__all__ = ["DEFAULT_TEMPLATE", "REASONS", "explain", "register"]

DEFAULT_TEMPLATE: Final = "\n\n_(answered by {model}: {why})_"

REASONS: Final = {
    "rate_limit": "was rate limited",
    "overloaded": "was overloaded",
    "server_error": "had a server error",
    "timeout": "timed out",
    "network": "could not be reached",
    "auth": "rejected its key",
    "auth_permanent": "rejected its key",
    "billing": "is out of credit",
    "context_overflow": "could not fit the conversation",
    "model_not_found": "does not serve this model",
    "stream_cut": "was cut off mid-answer",
    "format": "sent an answer that could not be read",
}
"""How each error class reads in the notice."""


def explain(attempts: Iterable[Attempt]) -> str:
    """Why the models before the serving one did not answer, in words."""
    parts: list[str] = []
    for attempt in attempts:
        if attempt.reason == "ok":
            continue
        if attempt.reason.startswith("skipped"):
            why = f"was skipped ({attempt.reason.removeprefix('skipped').strip(': ')})"
        else:
            why = REASONS.get(attempt.reason, f"failed ({attempt.reason})")
        part = f"{attempt.model} {why}"
        if part not in parts:  # retries of one route read as one line
            parts.append(part)
    return "; ".join(parts)


def register(plugin: Plugin) -> None:
    """Add a notice to replies served after a failover; log each failover."""
    template = plugin.options.get("template", DEFAULT_TEMPLATE)
    if not isinstance(template, str):
        raise TypeError(f"option template: expected a string, not {template!r}")
    template.format(model="m", why="w")  # a bad template fails at load, naming the plugin

    @plugin.intercept(MESSAGE_SENDING)
    async def add_notice(event: MessageSending) -> MessageSending | None:
        why = explain(event.attempts)
        if not why or event.model is None:
            return None
        return dataclasses.replace(
            event, text=event.text + template.format(model=event.model, why=why)
        )

    @plugin.on_model_failover
    async def log_failover(event: ModelFailover) -> None:
        plugin.log.warning(
            "request %s: %s %s (%s); next: %s",
            event.request_id,
            event.from_model,
            REASONS.get(event.reason, event.reason),
            event.detail,
            event.to_model or "none (the chain ran out)",
        )
