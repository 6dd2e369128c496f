"""The WebSocket gateway (being written)."""

from __future__ import annotations

import trio

from actors.channels.gateway import Gateway
from runtime import ChildContext, ChildSpec

__all__ = ["WEBSOCKET_NAME", "websocket_spec"]

WEBSOCKET_NAME = "websocket"


def websocket_spec(gateway: Gateway, *, shutdown_s: float) -> ChildSpec:
    """The child spec of the WebSocket gateway."""

    async def run(ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.wait_stop_requested()

    return ChildSpec(name=WEBSOCKET_NAME, start=run, shutdown_s=shutdown_s)
