"""The HTTP endpoint (being written)."""

from __future__ import annotations

import trio

from actors.channels.gateway import Gateway
from runtime import ChildContext, ChildSpec

__all__ = ["HTTP_NAME", "http_spec"]

HTTP_NAME = "http"


def http_spec(gateway: Gateway, *, shutdown_s: float) -> ChildSpec:
    """The child spec of the HTTP endpoint."""

    async def run(ctx: ChildContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.wait_stop_requested()

    return ChildSpec(name=HTTP_NAME, start=run, shutdown_s=shutdown_s)
