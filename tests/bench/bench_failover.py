"""Benchmark of the failover supervisor, measured in one run.

    python tests/bench/bench_failover.py [--quick]

Prints, against baselines measured in the same run:

1. the overhead of a streamed request through the failover supervisor (a
   provider actor, httpx, the fake provider in its own process) against a bare
   `httpx` streaming call to the same server: p50 and p99 of both and of the
   difference;
2. the added latency when the primary refuses connections: every request
   probing the dead primary first (probe interval 0), and the first request
   that discovers the outage (with its retry);
3. primary hits during a 60 s outage (overloaded), one request a second, on
   trio's MockClock: hits in total and per 15 s probe interval;
4. when `litellm` is installed (`pip install -e '.[bench]'`), its Router
   against the same fake provider, with its own bare-httpx baseline under
   asyncio, in a child process: LiteLLM's overhead, and ours as a fraction
   of it.

Targets (issue 3): overhead <= 0.25x LiteLLM's; <= 1 primary hit per probe
interval during an outage.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import trio
import trio.testing

from actors.app import build_tree
from actors.config import LoadedConfig, parse_config
from actors.failover.client import ModelsClient
from actors.models import ChatMessage, Completed, ModelRequest
from actors.providers.fake_server import FakeProvider
from runtime import ActorSystem

PROMPT: Final = (
    "Please say something reasonably short so that the answer streams in a few dozen chunks."
)
KEY: Final = "sk-bench"
PROBE_INTERVAL_S: Final = 15.0
OUTAGE_S: Final = 60


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_fake_process(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "actors.cli",
            "--log-level",
            "WARNING",
            "fake-provider",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_stats", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the fake provider did not start")


def config(
    primary_url: str, fallback_url: str, *, probe_interval_s: float = PROBE_INTERVAL_S
) -> str:
    return f"""
[providers.primary]
kind = "openai"
base_url = "{primary_url}"
api_key_env = "BENCH_KEY"
[providers.backup]
kind = "openai"
base_url = "{fallback_url}"
api_key_env = "BENCH_KEY"
[models]
primary = "primary/gpt-main"
fallbacks = ["backup/gpt-backup"]
[models.failover]
probe_interval_s = {probe_interval_s}
"""


@asynccontextmanager
async def running(toml: str, state: Path) -> AsyncIterator[ModelsClient]:
    loaded = LoadedConfig(
        Path("bench.toml"), parse_config(tomllib.loads(toml), "bench.toml"), state
    )
    tree, _ = build_tree(loaded, env={"BENCH_KEY": KEY})
    system = ActorSystem()

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        await system.run(tree.spec, handle_signals=False, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        yield ModelsClient(system.registry)
        system.request_stop()


def request() -> ModelRequest:
    return ModelRequest(messages=(ChatMessage(role="user", content=PROMPT),))


async def through_failover(client: ModelsClient) -> float:
    began = time.perf_counter()
    async with client.stream(request()) as events:
        async for event in events:
            if isinstance(event, Completed):
                assert event.result.text
    return (time.perf_counter() - began) * 1000


async def bare_httpx(http: httpx.AsyncClient, url: str) -> float:
    body = {
        "model": "gpt-main",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began = time.perf_counter()
    async with http.stream(
        "POST", url, json=body, headers={"authorization": f"Bearer {KEY}"}
    ) as resp:
        async for line in resp.aiter_lines():
            if line == "data: [DONE]":
                break
            if line.startswith("data: "):
                json.loads(line[6:])
    return (time.perf_counter() - began) * 1000


async def sample(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await fn()
    return [await fn() for _ in range(n)]


async def overhead(port: int, n: int, state: Path) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}/v1"
    async with httpx.AsyncClient() as http, running(config(base, base), state) as client:
        bare: list[float] = []
        ours: list[float] = []
        for _ in range(3):  # interleaved rounds: drift hits both
            bare += await sample(
                functools.partial(bare_httpx, http, f"{base}/chat/completions"), n // 3, 20
            )
            ours += await sample(functools.partial(through_failover, client), n // 3, 20)
    return {
        "bare_p50": pct(bare, 0.5),
        "bare_p99": pct(bare, 0.99),
        "ours_p50": pct(ours, 0.5),
        "ours_p99": pct(ours, 0.99),
    }


async def refused(port: int, n: int, state: Path) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}/v1"
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with running(config(base, base), state / "a") as healthy:
        normal = await sample(functools.partial(through_failover, healthy), n, 20)
    async with running(config(dead, base, probe_interval_s=0.000001), state / "b") as probing:
        every = await sample(functools.partial(through_failover, probing), n, 20)
    async with running(config(dead, base), state / "c") as fresh:
        first = await through_failover(fresh)
    return {
        "healthy_p50": pct(normal, 0.5),
        "probing_p50": pct(every, 0.5),
        "probing_p99": pct(every, 0.99),
        "first_ms": first,
    }


async def outage(state: Path) -> dict[str, Any]:
    fake = FakeProvider(schedule="ok")
    fake.configure({"per_model": {"gpt-main": "fail forever with overloaded"}})
    async with trio.open_nursery() as nursery:
        port = await nursery.start(fake.serve)
        base = f"http://127.0.0.1:{port}/v1"
        hits: list[int] = []
        async with running(config(base, base), state) as client:
            start = trio.current_time()
            for second in range(OUTAGE_S):
                await trio.sleep_until(start + second)
                await through_failover(client)
                hits.append(fake.stats()["by_model"].get("gpt-main", 0))
        nursery.cancel_scope.cancel()
    per_interval = []
    previous = 0
    for end in range(int(PROBE_INTERVAL_S), OUTAGE_S + 1, int(PROBE_INTERVAL_S)):
        per_interval.append(hits[end - 1] - previous)
        previous = hits[end - 1]
    return {"total": hits[-1], "per_interval": per_interval}


def litellm_child(port: int, n: int) -> dict[str, float] | None:
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--litellm-child", str(port), str(n)],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        print(f"  (litellm run failed: {exc.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_litellm(port: int, n: int) -> dict[str, float]:
    import asyncio

    import litellm

    litellm.suppress_debug_info = True
    base = f"http://127.0.0.1:{port}/v1"
    router = litellm.Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {"model": "openai/gpt-main", "api_base": base, "api_key": KEY},
            }
        ]
    )

    async def via_router() -> float:
        began = time.perf_counter()
        stream = await router.acompletion(
            model="bench", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        async for _ in stream:
            pass
        return (time.perf_counter() - began) * 1000

    async def bare(http: httpx.AsyncClient) -> float:
        body = {
            "model": "gpt-main",
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
        }
        began = time.perf_counter()
        async with http.stream(
            "POST",
            f"{base}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
        ) as resp:
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    break
        return (time.perf_counter() - began) * 1000

    async def main() -> dict[str, float]:
        async with httpx.AsyncClient() as http:
            bares: list[float] = []
            theirs: list[float] = []
            for _ in range(20):
                await bare(http)
                await via_router()
            for _ in range(3):
                bares += [await bare(http) for _ in range(n // 3)]
                theirs += [await via_router() for _ in range(n // 3)]
        return {
            "bare_p50": pct(bares, 0.5),
            "bare_p99": pct(bares, 0.99),
            "litellm_p50": pct(theirs, 0.5),
            "litellm_p99": pct(theirs, 0.99),
        }

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--litellm-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.litellm_child:
        print(json.dumps(run_litellm(int(args.litellm_child[0]), int(args.litellm_child[1]))))
        return
    n = 150 if args.quick else 600
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"callboard-bench-{os.getpid()}"
    port = free_port()
    fake = start_fake_process(port)
    try:
        print(
            f"callboard failover benchmark ({n} streamed requests each, fake provider in its own "
            f"process, Python {sys.version.split()[0]})\n"
        )
        o = trio.run(overhead, port, n, state / "overhead")
        added50, added99 = o["ours_p50"] - o["bare_p50"], o["ours_p99"] - o["bare_p99"]
        print(f"bare httpx           p50 {o['bare_p50']:7.2f} ms   p99 {o['bare_p99']:7.2f} ms")
        print(f"through failover     p50 {o['ours_p50']:7.2f} ms   p99 {o['ours_p99']:7.2f} ms")
        print(f"overhead             p50 {added50:7.2f} ms   p99 {added99:7.2f} ms")

        r = trio.run(refused, port, n // 3, state / "refused")
        print("\nprimary refuses connections (fallback on the same fake provider):")
        print(f"  healthy primary            p50 {r['healthy_p50']:7.2f} ms")
        print(
            f"  every request probes it    p50 {r['probing_p50']:7.2f} ms   p99 {r['probing_p99']:7.2f} ms"
            f"   added p50 {r['probing_p50'] - r['healthy_p50']:6.2f} ms"
        )
        print(
            f"  the request that finds it  {r['first_ms']:7.2f} ms (one retry with full-jitter backoff)"
        )

        clock = trio.testing.MockClock(autojump_threshold=0.05)
        out = trio.run(outage, state / "outage", clock=clock)
        worst = max(out["per_interval"][1:]) if len(out["per_interval"]) > 1 else 0
        print(f"\n{OUTAGE_S} s outage of the primary, one request a second (MockClock):")
        print(
            f"  primary hits {out['total']} in {OUTAGE_S} s; per {PROBE_INTERVAL_S:g} s interval "
            f"{out['per_interval']} (the first includes the request that found it and its retry)"
        )
        print(
            f"  after the breaker opened: at most {worst} hit(s) per probe interval (target <= 1)"
        )

        try:
            import litellm  # noqa: F401
        except ImportError:
            print("\nlitellm is not installed (pip install -e '.[bench]'): no LiteLLM comparison")
        else:
            lite = litellm_child(port, n)
            if lite is not None:
                theirs = lite["litellm_p50"] - lite["bare_p50"]
                print(
                    "\nLiteLLM Router (asyncio, same fake provider), its own bare httpx baseline:"
                )
                print(
                    f"  bare httpx           p50 {lite['bare_p50']:7.2f} ms   p99 {lite['bare_p99']:7.2f} ms"
                )
                print(
                    f"  through LiteLLM      p50 {lite['litellm_p50']:7.2f} ms   p99 {lite['litellm_p99']:7.2f} ms"
                )
                print(f"  LiteLLM overhead     p50 {theirs:7.2f} ms")
                print(
                    f"  ours / LiteLLM's overhead at p50: {added50 / theirs:5.2f}x  (target <= 0.25x)"
                )
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
