"""Benchmark of the actor runtime against raw trio, measured in one run.

    python tests/bench/bench_runtime.py [--quick]

Prints, each against a baseline measured in the same run with the same payload:

* tell throughput: producer task -> actor, vs producer task -> consumer task
  over a trio memory channel;
* ask round trip: vs a raw request/reply (a trio.Event and a result slot);
* spawn time and RSS per idle actor at 10k and 100k, vs an idle task parked on
  its own memory channel pair (each measured in a fresh process);
* restart latency: crash -> restarted actor answering, vs `nursery.start` of a
  fresh task.

Targets (issue 2): tell >= 1.0x raw, ask <= 1.3x raw, <= 6 KB per idle actor.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import subprocess
import sys
import time
from typing import Any, Final

import trio

from runtime import (
    Actor,
    DeadLetters,
    DynamicSupervisor,
    HookBus,
    InflightTracker,
    MailboxSpec,
    Message,
    Registry,
    Restart,
    SupervisorPolicy,
    SystemServices,
    actor_spec,
)

RUNS: Final = 3


class Payload(Message):
    n: int
    text: str


PAYLOAD: Final = Payload(n=1, text="x" * 64)


def services() -> SystemServices:
    dead = DeadLetters()
    return SystemServices(Registry(dead), dead, HookBus(), InflightTracker())


class Sink(Actor[Payload]):
    def __init__(self) -> None:
        self.count = 0

    async def receive(self, message: Payload) -> object:
        self.count += 1
        return message.n


class Crashy(Actor[Any]):
    async def receive(self, message: Any) -> object:
        if message == "crash":
            raise RuntimeError("crash")
        return "ok"


async def with_dynamic_sup(body: Any, *specs: Any) -> Any:
    svc = services()
    sup = DynamicSupervisor(
        "bench", SupervisorPolicy(max_restarts=1_000_000, within_s=1), services=svc
    )
    result = None
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        refs = [await sup.start_child(spec) for spec in specs]
        result = await body(sup, refs)
        sup.request_stop()
    return result


# -- tell throughput ------------------------------------------------------------


async def raw_channel_throughput(n: int) -> float:
    send, receive = trio.open_memory_channel[Payload](1024)
    got = 0

    async def consumer() -> None:
        nonlocal got
        async for _ in receive:
            got += 1

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        async with send:
            for _ in range(n):
                await send.send(PAYLOAD)
    elapsed = time.perf_counter() - began
    assert got == n
    return n / elapsed


async def tell_throughput(n: int) -> float:
    async def body(sup: DynamicSupervisor, refs: list[Any]) -> float:
        ref = refs[0]
        began = time.perf_counter()
        for _ in range(n):
            await ref.tell(PAYLOAD)
        await ref.ask(PAYLOAD, 60)  # everything before it has been handled
        return n / (time.perf_counter() - began)

    return float(await with_dynamic_sup(body, actor_spec("sink", Sink, mailbox=MailboxSpec(1024))))


# -- ask round trip --------------------------------------------------------------


async def raw_request_reply(n: int) -> float:
    """Request/reply between two tasks with a trio.Event and a result slot (µs each)."""
    send, receive = trio.open_memory_channel[tuple[Payload, list[Any], trio.Event]](1024)

    async def server() -> None:
        async for payload, slot, event in receive:
            slot.append(payload.n)
            event.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        began = time.perf_counter()
        for _ in range(n):
            slot: list[Any] = []
            event = trio.Event()
            await send.send((PAYLOAD, slot, event))
            await event.wait()
            assert slot[0] == 1
        elapsed = time.perf_counter() - began
        await send.aclose()
    return elapsed / n * 1e6


async def ask_round_trip(n: int) -> float:
    async def body(sup: DynamicSupervisor, refs: list[Any]) -> float:
        ref = refs[0]
        began = time.perf_counter()
        for _ in range(n):
            assert await ref.ask(PAYLOAD, 10) == 1
        return (time.perf_counter() - began) / n * 1e6

    return float(await with_dynamic_sup(body, actor_spec("sink", Sink)))


# -- restart latency -------------------------------------------------------------


async def raw_task_start(n: int) -> float:
    async def task(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()

    async with trio.open_nursery() as nursery:
        began = time.perf_counter()
        for _ in range(n):
            await nursery.start(task)
        return (time.perf_counter() - began) / n * 1e6


async def restart_latency(n: int) -> float:
    async def body(sup: DynamicSupervisor, refs: list[Any]) -> float:
        ref = refs[0]
        total = 0.0
        for _ in range(n):
            ref.tell_nowait("crash")
            began = time.perf_counter()
            assert await ref.ask("ping", 10) == "ok"
            total += time.perf_counter() - began
        return total / n * 1e6

    return float(await with_dynamic_sup(body, actor_spec("crashy", Crashy)))


# -- spawn and memory (each in its own process) --------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def child_spawn_actors(n: int) -> dict[str, float]:
    class Idle(Actor[Any]):
        async def receive(self, message: Any) -> object:
            return None

    svc = services()
    sup = DynamicSupervisor("bench", SupervisorPolicy(), services=svc)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        gc.collect()
        before = rss_bytes()
        began = time.perf_counter()
        for i in range(n):
            await sup.start_child(
                actor_spec(f"a{i}", Idle, restart=Restart.TEMPORARY, register=False)
            )
        spawn_s = time.perf_counter() - began
        gc.collect()
        after = rss_bytes()
        assert sup.count_children().active == n
        result = {"spawn_us": spawn_s / n * 1e6, "bytes_per": (after - before) / n}
        nursery.cancel_scope.cancel()
    return result


async def child_spawn_raw(n: int) -> dict[str, float]:
    async def parked(*, task_status: trio.TaskStatus[None]) -> None:
        send, receive = trio.open_memory_channel[Any](0)
        task_status.started()
        async with send, receive:
            await receive.receive()

    async with trio.open_nursery() as nursery:
        gc.collect()
        before = rss_bytes()
        began = time.perf_counter()
        for _ in range(n):
            await nursery.start(parked)
        spawn_s = time.perf_counter() - began
        gc.collect()
        after = rss_bytes()
        result = {"spawn_us": spawn_s / n * 1e6, "bytes_per": (after - before) / n}
        nursery.cancel_scope.cancel()
    return result


def in_child(kind: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


# -- the report --------------------------------------------------------------------


def paired(raw: Any, ours: Any, n: int) -> tuple[float, float]:
    """Medians of RUNS interleaved runs of the baseline and ours (drift hits both)."""
    raws: list[float] = []
    mine: list[float] = []
    for _ in range(RUNS):
        raws.append(trio.run(raw, n))
        mine.append(trio.run(ours, n))
    return statistics.median(raws), statistics.median(mine)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The restart benchmark crashes on purpose thousands of times; its log lines
    # would measure the terminal, not the runtime.
    logging.disable(logging.CRITICAL)
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        fn = child_spawn_actors if kind == "actors" else child_spawn_raw
        print(json.dumps(trio.run(fn, n)))
        return

    tells = 20_000 if args.quick else 200_000
    asks = 5_000 if args.quick else 50_000
    restarts = 500 if args.quick else 5_000
    print(
        f"callboard runtime benchmark (median of {RUNS} interleaved runs, Python {sys.version.split()[0]}, "
        f"trio {trio.__version__})\n"
    )

    raw_tput, tell_tput = paired(raw_channel_throughput, tell_throughput, tells)
    print(
        f"tell throughput   raw channel {raw_tput:>10,.0f} msg/s   "
        f"actor {tell_tput:>10,.0f} msg/s   ratio {tell_tput / raw_tput:5.2f}x  (target >= 1.0x)"
    )

    raw_rr, ask_rr = paired(raw_request_reply, ask_round_trip, asks)
    print(
        f"ask round trip    raw Event   {raw_rr:>10.1f} µs      "
        f"actor {ask_rr:>10.1f} µs      ratio {ask_rr / raw_rr:5.2f}x  (target <= 1.3x)"
    )

    raw_start, restart = paired(raw_task_start, restart_latency, restarts)
    print(
        f"restart latency   raw start   {raw_start:>10.1f} µs      "
        f"actor {restart:>10.1f} µs      ratio {restart / raw_start:5.2f}x  "
        f"(crash -> restarted actor answers)"
    )

    for n in (10_000,) if args.quick else (10_000, 100_000):
        raw = in_child("raw", n)
        ours = in_child("actors", n)
        print(
            f"idle at {n:>7,}   raw task    {raw['bytes_per'] / 1024:>7.2f} KB {raw['spawn_us']:>6.1f} µs"
            f"   actor {ours['bytes_per'] / 1024:>7.2f} KB {ours['spawn_us']:>6.1f} µs"
            f"   ratio {ours['bytes_per'] / raw['bytes_per']:5.2f}x mem"
            f" {ours['spawn_us'] / raw['spawn_us']:5.2f}x spawn  (target <= 6 KB)"
        )


if __name__ == "__main__":
    main()
