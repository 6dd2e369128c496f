"""Benchmark of the hook bus: what an emit costs with 0, 1 and 10 observers.

    python tests/bench/bench_hooks.py [--quick]

Prints, per emit, against baselines measured in the same run:

* the emitter's cost (`await bus.emit(...)` and `bus.notify(...)`) with 0, 1
  and 10 observers, against awaiting an empty async function (what the
  cheapest possible hook call costs the emitter);
* the whole cost, until every observer has run, with 1 and 10 observers
  (concurrent, and on an ordered plugin lane), against starting one task per
  handler with `nursery.start_soon` and running it, bare and under its own
  `move_on_after` (what the bus's isolation needs);
* one interceptor in the emitter's path, against awaiting the handler directly.

Target (issue 6): <= 5 us an emit with no handlers.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio
import trio.lowlevel

from runtime import HookBus, HookEvent

TARGET_NO_HANDLERS_US: Final = 5.0


@dataclass(frozen=True, slots=True)
class Payload:
    n: int


EVENT: Final = HookEvent("bench:event", Payload)
PAYLOAD: Final = Payload(1)


async def handler(payload: Payload) -> None:
    return None


async def keep(payload: Payload) -> Payload | None:
    return None


def per_call_us(began: float, n: int) -> float:
    return (time.perf_counter() - began) / n * 1e6


async def empty_await(n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        await handler(PAYLOAD)
    return per_call_us(began, n)


async def emit_cost(bus: HookBus, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        await bus.emit(EVENT, PAYLOAD)
    return per_call_us(began, n)


async def notify_cost(bus: HookBus, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        bus.notify(EVENT, PAYLOAD)
    return per_call_us(began, n)


async def with_bus(
    observers: int, lane: bool, run: Callable[[HookBus], Awaitable[float]]
) -> tuple[float, dict[str, int]]:
    bus = HookBus(queue_size=10_000_000)
    for _ in range(observers):
        bus.observe(EVENT, handler, lane="plugin" if lane else None)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        result = await run(bus)
        bus.close()
    return result, bus.stats()


async def end_to_end(bus: HookBus, n: int) -> float:
    """Notify `n` times, then wait for the dispatcher to run every observer."""
    began = time.perf_counter()
    for i in range(n):
        bus.notify(EVENT, PAYLOAD)
        if i % 1000 == 999:
            await trio.lowlevel.checkpoint()  # let the dispatcher keep up, as a live emitter would
    while bus.stats().get("observed", 0) < n * _observers(bus):
        await trio.lowlevel.checkpoint()
    return per_call_us(began, n)


def _observers(bus: HookBus) -> int:
    return len(bus.observers(EVENT))


async def timed_handler(payload: Payload) -> None:
    with trio.move_on_after(5):
        await handler(payload)


async def raw_spawn(handlers: int, n: int, timed: bool = False) -> float:
    """One task per handler per event, started and run: the floor of concurrent observers
    (with `timed`, each under its own `move_on_after`, as isolation needs)."""
    run = timed_handler if timed else handler
    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            for _ in range(handlers):
                nursery.start_soon(run, PAYLOAD)
            if i % 1000 == 999:
                await trio.lowlevel.checkpoint()
    return per_call_us(began, n)


async def intercept_cost(n: int) -> tuple[float, float]:
    bus = HookBus()
    bus.intercept(EVENT, keep)
    began = time.perf_counter()
    for _ in range(n):
        await bus.emit(EVENT, PAYLOAD)
    chained = per_call_us(began, n)
    began = time.perf_counter()
    for _ in range(n):
        await keep(PAYLOAD)
    return chained, per_call_us(began, n)


async def main(quick: bool) -> None:
    n_free = 50_000 if quick else 500_000
    n = 5_000 if quick else 50_000
    print(
        f"callboard hook bus benchmark (Python {sys.version.split()[0]}, trio {trio.__version__})\n"
    )
    baseline = await empty_await(n_free)
    bare = HookBus()
    emit0 = await emit_cost(bare, n_free)
    notify0 = await notify_cost(bare, n_free)
    print(f"empty async call (baseline)      {baseline:7.3f} us")
    print(
        f"emit, no handlers                {emit0:7.3f} us   {emit0 / baseline:5.2f}x"
        f"   (target <= {TARGET_NO_HANDLERS_US:g} us: {'met' if emit0 <= TARGET_NO_HANDLERS_US else 'MISSED'})"
    )
    print(f"notify, no handlers              {notify0:7.3f} us   {notify0 / baseline:5.2f}x")
    print()
    print("emitter's cost (observers run later, in the dispatcher):")
    for count in (1, 10):
        emit_us, _ = await with_bus(count, False, lambda bus: emit_cost(bus, n))
        notify_us, _ = await with_bus(count, False, lambda bus: notify_cost(bus, n))
        print(
            f"  {count:2d} observer(s)   emit {emit_us:7.3f} us ({emit_us / baseline:5.2f}x)"
            f"   notify {notify_us:7.3f} us ({notify_us / baseline:5.2f}x)"
        )
    print()
    print("whole cost until every observer ran, an emit:")
    for count in (1, 10):
        spawn = await raw_spawn(count, n)
        timed = await raw_spawn(count, n, timed=True)
        concurrent, stats = await with_bus(count, False, lambda bus: end_to_end(bus, n))
        assert stats["observed"] == n * count, stats
        laned, stats = await with_bus(count, True, lambda bus: end_to_end(bus, n))
        assert stats["observed"] == n * count, stats
        print(
            f"  {count:2d} observer(s)   raw start_soon {spawn:7.2f} us"
            f" (with a timeout {timed:7.2f} us)"
            f"   bus {concurrent:7.2f} us ({concurrent / spawn:4.2f}x, {concurrent / timed:4.2f}x)"
            f"   ordered lane {laned:7.2f} us ({laned / spawn:4.2f}x)"
        )
    print()
    chained, direct = await intercept_cost(n)
    print(
        f"1 interceptor in the path        {chained:7.3f} us   direct await {direct:7.3f} us"
        f"   {chained / direct:5.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    trio.run(main, parser.parse_args().quick)
