"""No leaks: a thousand WebSocket connections and a thousand HTTP requests later,
the process's open file descriptors and its tasks are back where they were."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from actors.channels.client import GatewayClient
from tests.actors.harness import daemon, io_clock
from tests.helpers import wait_until

CONNECTIONS = 1000
REQUESTS = 1000


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return walk(trio.lowlevel.current_root_task())


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


async def test_a_thousand_connections_and_requests_leak_nothing(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with daemon("", tmp_path) as d:
        ws_url = d.gateway.addresses["websocket"]
        http_url = d.gateway.addresses["http"]
        # Warm up what is created once (pools, lazily started services).
        async with GatewayClient.connect(ws_url) as client:
            await client.chat("warmup", "hello")
        async with httpx.AsyncClient() as http:
            await http.get(f"{http_url}/healthz")
        await wait_until(lambda: not d.gateway.runs)
        fds, tasks = open_fds(), count_tasks()

        for n in range(CONNECTIONS):
            async with GatewayClient.connect(ws_url) as client:
                if n % 100 == 0:
                    # The warm session: a new one would rightly stay (until idle_s).
                    assert (await client.chat("warmup", "hi"))["state"] == "final"
        tls = ssl.create_default_context()  # unused on http://, but costly to build per client
        for _ in range(REQUESTS):
            # A fresh connection for each request: opened and closed.
            async with httpx.AsyncClient(headers={"connection": "close"}, verify=tls) as http:
                response = await http.get(f"{http_url}/healthz")
                assert response.status_code == 200

        # Closing handshakes may still be finishing; each tick costs up to the
        # clock's autojump threshold of real time, so the wait is short.
        await wait_until(lambda: count_tasks() <= tasks and open_fds() <= fds, timeout_s=2)
        assert open_fds() == fds
        assert count_tasks() == tasks
