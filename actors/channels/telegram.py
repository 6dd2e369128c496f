"""The Telegram channel (being written): the Bot API over httpx, long polling."""

from __future__ import annotations

import trio

from actors.channels.gateway import Gateway
from runtime import ChildContext, ChildSpec

__all__ = ["TELEGRAM_NAME", "telegram_spec"]

TELEGRAM_NAME = "telegram"


def telegram_spec(gateway: Gateway, *, shutdown_s: float) -> ChildSpec:
    """The child spec of the Telegram channel."""

    async def run(ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.wait_stop_requested()

    return ChildSpec(name=TELEGRAM_NAME, start=run, shutdown_s=shutdown_s)
