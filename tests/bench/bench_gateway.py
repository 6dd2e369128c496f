"""Benchmark of the WebSocket gateway against a raw trio-websocket echo server.

    python tests/bench/bench_gateway.py [--quick]

Both servers run in their own process; the clients run here. Prints:

* throughput: 100 closed-loop clients doing `chat.send` to `final` through a
  real `callboard run` (echo provider, transcripts on, fsynced), against 100
  clients doing a message round trip with the raw echo server;
* latency p50/p99 of turns paced at 500 a second (open loop: sends go out on
  schedule whatever the answers do), against the same pacing on the raw echo;
* server RSS per idle connection at 5,000 connections, for both.

Targets (issue 5): >= 0.5x the raw echo throughput (a turn sends several
frames back for each one in: the `res`, the deltas, the `final`); p99 under
10 ms at 500 turns/s; <= 50 KB per idle connection.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import trio
import trio.lowlevel
from trio_websocket import open_websocket_url, serve_websocket

from actors.channels.client import GatewayClient

CLIENTS: Final = 100
PACED_PER_S: Final = 500
IDLE_CONNECTIONS: Final = 5_000
MESSAGE: Final = "hi"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the servers ---------------------------------------------------------------------------------


async def echo_server(port: int) -> None:
    async def handler(request: Any) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except Exception:
            return

    await serve_websocket(handler, "127.0.0.1", port, None, max_message_size=2**20)


def start_echo(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--echo-server", str(port)])


def start_daemon(root: Path) -> tuple[subprocess.Popen[str], str]:
    config = root / "config.toml"
    config.write_text(
        f"""
[gateway]
ws_port = {free_port()}
http_port = {free_port()}
send_queue = 4096
max_connections = 20000
[state]
dir = "state"
[providers.local]
kind = "echo"
[models]
primary = "local/echo"
[sessions]
queue_limit = 64
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "--log-level", "WARNING", "run", "-c", str(config)],
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"ws://127.0.0.1:{config.read_text().split('ws_port = ')[1].split()[0]}"
    return proc, url


async def wait_listening(url: str) -> None:
    with trio.fail_after(30):
        while True:
            try:
                async with open_websocket_url(url):
                    return
            except Exception:
                await trio.sleep(0.05)


# -- clients -----------------------------------------------------------------------------------------


async def closed_loop_gateway(url: str, seconds: float) -> tuple[int, list[float]]:
    done = 0
    latencies: list[float] = []

    async def client(n: int) -> None:
        nonlocal done
        async with GatewayClient.connect(url) as c:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                result = await c.chat(f"bench{n}", MESSAGE)
                assert result["state"] == "final"
                latencies.append((time.perf_counter() - began) * 1000)
                done += 1

    async with trio.open_nursery() as nursery:
        for n in range(CLIENTS):
            nursery.start_soon(client, n)
    return done, latencies


async def closed_loop_echo(url: str, seconds: float) -> tuple[int, list[float]]:
    done = 0
    latencies: list[float] = []
    frame = json.dumps(
        {"type": "req", "id": "1", "method": "chat.send", "params": {"text": MESSAGE}}
    )

    async def client() -> None:
        nonlocal done
        async with open_websocket_url(url) as ws:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await ws.send_message(frame)
                await ws.get_message()
                latencies.append((time.perf_counter() - began) * 1000)
                done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(CLIENTS):
            nursery.start_soon(client)
    return done, latencies


async def paced(url: str, total: int, raw: bool) -> list[float]:
    """Open loop: `total` sends at PACED_PER_S, spread over CLIENTS connections."""
    latencies: list[float] = []
    interval = 1 / PACED_PER_S
    per_client = total // CLIENTS
    frame = json.dumps({"type": "req", "id": "1", "method": "x", "params": {"text": MESSAGE}})

    async def client(n: int, start: float) -> None:
        async def one(at: float) -> None:
            await trio.sleep_until(at)
            began = time.perf_counter()
            if raw:
                async with lock:
                    await ws.send_message(frame)
                    await ws.get_message()
            else:
                result = await gw.chat(f"paced{n}", MESSAGE)
                assert result["state"] == "final"
            latencies.append((time.perf_counter() - began) * 1000)

        lock = trio.Lock()
        if raw:
            async with open_websocket_url(url) as ws, trio.open_nursery() as nursery:
                for i in range(per_client):
                    nursery.start_soon(one, start + (i * CLIENTS + n) * interval)
        else:
            async with GatewayClient.connect(url) as gw, trio.open_nursery() as nursery:
                for i in range(per_client):
                    nursery.start_soon(one, start + (i * CLIENTS + n) * interval)

    start = trio.current_time() + 2.0  # every connection is open by then
    async with trio.open_nursery() as nursery:
        for n in range(CLIENTS):
            nursery.start_soon(client, n, start)
    return latencies


async def idle_rss(url: str, pid: int, count: int, raw: bool) -> float:
    before = rss_kb(pid)
    async with trio.open_nursery() as nursery:
        opened = 0
        all_open = trio.Event()
        release = trio.Event()

        async def hold() -> None:
            nonlocal opened
            if raw:
                async with open_websocket_url(url):
                    opened += 1
                    if opened == count:
                        all_open.set()
                    await release.wait()
            else:
                async with GatewayClient.connect(url):
                    opened += 1
                    if opened == count:
                        all_open.set()
                    await release.wait()

        limiter = trio.CapacityLimiter(200)

        async def start_one() -> None:
            async with limiter:
                pass
            await hold()

        for _ in range(count):
            nursery.start_soon(start_one)
            await trio.lowlevel.checkpoint()
        with trio.fail_after(300):
            await all_open.wait()
        await trio.sleep(1)
        after = rss_kb(pid)
        release.set()
    return (after - before) / count


async def main(quick: bool) -> None:
    seconds = 5.0 if quick else 15.0
    paced_total = 1000 if quick else 5000
    idle = 1000 if quick else IDLE_CONNECTIONS
    root = Path(tempfile.mkdtemp(prefix="cb-bench-gw-"))
    echo_port = free_port()
    echo = start_echo(echo_port)
    daemon, url = start_daemon(root)
    echo_url = f"ws://127.0.0.1:{echo_port}"
    try:
        await wait_listening(echo_url)
        await wait_listening(url)
        print(
            f"callboard gateway benchmark ({CLIENTS} clients, {seconds:g} s each, servers in their "
            f"own processes, Python {sys.version.split()[0]})\n"
        )
        raw_done, raw_lat = await closed_loop_echo(echo_url, seconds)
        gw_done, gw_lat = await closed_loop_gateway(url, seconds)
        raw_rate, gw_rate = raw_done / seconds, gw_done / seconds
        print(
            f"closed loop   raw echo {raw_rate:8,.0f} msg/s (p50 {pct(raw_lat, 0.5):.2f} ms)"
            f"   gateway {gw_rate:8,.0f} turns/s (p50 {pct(gw_lat, 0.5):.2f} ms,"
            f" p99 {pct(gw_lat, 0.99):.2f} ms)   ratio {gw_rate / raw_rate:.2f}x  (target >= 0.5x)"
        )
        raw_paced = await paced(echo_url, paced_total, raw=True)
        gw_paced = await paced(url, paced_total, raw=False)
        print(
            f"paced {PACED_PER_S}/s  raw echo p50 {pct(raw_paced, 0.5):.2f} ms p99 {pct(raw_paced, 0.99):.2f} ms"
            f"   gateway p50 {pct(gw_paced, 0.5):.2f} ms p99 {pct(gw_paced, 0.99):.2f} ms"
            f"  (target p99 < 10 ms)"
        )
        raw_idle = await idle_rss(echo_url, echo.pid, idle, raw=True)
        gw_idle = await idle_rss(url, daemon.pid, idle, raw=False)
        print(
            f"idle at {idle:,}  raw echo {raw_idle:.1f} KB   gateway {gw_idle:.1f} KB per connection"
            f"   ratio {gw_idle / raw_idle:.2f}x  (target <= 50 KB)"
        )
    finally:
        for proc in (echo, daemon):
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        trio.run(echo_server, args.echo_server)
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        trio.run(main, args.quick)
