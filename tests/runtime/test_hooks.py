"""The hook bus: isolated concurrent observers, ordered interceptors, vetoes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pytest
import trio
from trio.testing import MockClock

from runtime import HookBus, HookEvent, HookPayloadError, HookVetoed, Veto
from tests.helpers import wait_until


@dataclass(frozen=True)
class Sending:
    text: str


@dataclass(frozen=True)
class Other:
    n: int


SENDING = HookEvent("message:sending", Sending)
OTHER = HookEvent("other:event", Other)


@pytest.fixture
async def bus(nursery_bus: tuple[HookBus, trio.Nursery]) -> HookBus:
    return nursery_bus[0]


@pytest.fixture
async def nursery_bus():  # type: ignore[no-untyped-def]
    bus = HookBus(default_timeout_s=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        yield bus, nursery
        nursery.cancel_scope.cancel()


async def test_an_event_without_handlers_is_a_no_op(autojump_clock: MockClock) -> None:
    bus = HookBus()
    payload = Sending("hi")
    assert await bus.emit(SENDING, payload) is payload
    bus.notify(SENDING, payload)
    assert not bus.has_handlers(SENDING)
    assert bus.stats() == {}


async def test_observers_run_concurrently_and_a_failure_stays_isolated(
    autojump_clock: MockClock, bus: HookBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callboard.runtime.hooks")
    seen: list[tuple[str, float]] = []

    async def slow(p: Sending) -> None:
        await trio.sleep(1)
        seen.append(("slow", trio.current_time()))

    async def broken(p: Sending) -> None:
        raise RuntimeError("plugin bug")

    async def hung(p: Sending) -> None:
        await trio.sleep_forever()

    async def quick(p: Sending) -> None:
        seen.append(("quick", trio.current_time()))

    for handler in (slow, broken, hung, quick):
        bus.observe(SENDING, handler)
    began = trio.current_time()
    bus.notify(SENDING, Sending("x"))  # returns at once: nothing waited for
    assert trio.current_time() == began
    await wait_until(lambda: bus.stats().get("observer_timeouts") == 1)
    assert [name for name, _ in seen] == ["quick", "slow"]
    assert seen[1][1] - began == pytest.approx(1, abs=0.05)  # ran alongside, not after, the others
    assert bus.stats() == {"observed": 2, "observer_errors": 1, "observer_timeouts": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert any("observer tests.runtime.test_hooks" in m and "broken failed" in m for m in messages)
    assert any("hung timed out after 2 s" in m for m in messages)


async def test_interceptors_run_in_priority_order_and_may_replace(
    autojump_clock: MockClock, bus: HookBus
) -> None:
    order: list[str] = []

    def make(tag: str):  # type: ignore[no-untyped-def]
        async def handler(p: Sending) -> Sending:
            order.append(tag)
            return replace(p, text=p.text + tag)

        return handler

    bus.intercept(SENDING, make("b"), priority=10)
    bus.intercept(SENDING, make("a"), priority=-5)
    bus.intercept(SENDING, make("c"), priority=10)  # same priority: registration order

    async def keep(p: Sending) -> None:
        order.append("keep")

    bus.intercept(SENDING, keep, priority=0)
    observed: list[Sending] = []

    async def watch(p: Sending) -> None:
        observed.append(p)

    bus.observe(SENDING, watch)
    result = await bus.emit(SENDING, Sending(">"))
    assert order == ["a", "keep", "b", "c"]
    assert result == Sending(">abc")
    await wait_until(lambda: bool(observed))
    assert observed == [Sending(">abc")]  # observers see the final payload


async def test_a_veto_stops_the_chain_and_reaches_the_emitter(
    autojump_clock: MockClock, bus: HookBus
) -> None:
    later: list[str] = []

    async def veto(p: Sending) -> Veto:
        return Veto("profanity")

    async def after(p: Sending) -> None:
        later.append("ran")

    bus.intercept(SENDING, veto, name="filter")
    bus.intercept(SENDING, after, priority=1)
    bus.observe(SENDING, after)
    with pytest.raises(HookVetoed, match="message:sending vetoed by filter: profanity") as info:
        await bus.emit(SENDING, Sending("x"))
    assert info.value.reason == "profanity"
    await trio.sleep(1)
    assert later == []  # neither the later interceptor nor the observers ran
    assert bus.stats()["vetoes"] == 1


@pytest.mark.parametrize("failure", ["raises", "hangs"])
async def test_fail_open_skips_and_fail_closed_vetoes(
    autojump_clock: MockClock, bus: HookBus, failure: str
) -> None:
    async def bad(p: Sending) -> None:
        if failure == "raises":
            raise ValueError("oops")
        await trio.sleep_forever()

    open_handle = bus.intercept(SENDING, bad, fail_open=True, timeout_s=1)
    assert await bus.emit(SENDING, Sending("x")) == Sending("x")
    bus.remove(SENDING, open_handle)
    bus.intercept(SENDING, bad, fail_open=False, timeout_s=1, name="guard")
    began = trio.current_time()
    with pytest.raises(HookVetoed, match="vetoed by guard: fail_closed interceptor"):
        await bus.emit(SENDING, Sending("x"))
    assert trio.current_time() - began <= 1  # held no longer than its timeout
    key = "interceptor_errors" if failure == "raises" else "interceptor_timeouts"
    assert bus.stats()[key] == 2


async def test_payload_types_are_checked(autojump_clock: MockClock, bus: HookBus) -> None:
    async def wrong(p: Sending) -> Other:
        return Other(1)

    async def watch(p: Sending) -> None:
        pass

    bus.observe(SENDING, watch)
    with pytest.raises(
        HookPayloadError, match="message:sending: the payload must be Sending, got Other"
    ):
        bus.notify(SENDING, Other(1))  # type: ignore[arg-type]
    bus.intercept(SENDING, wrong, name="wrong")  # type: ignore[arg-type]
    with pytest.raises(HookPayloadError, match="the replacement from wrong must be Sending"):
        await bus.emit(SENDING, Sending("x"))


async def test_remove_and_has_handlers(autojump_clock: MockClock, bus: HookBus) -> None:
    async def watch(p: Other) -> None:
        pass

    handle = bus.observe(OTHER, watch)
    assert bus.has_handlers(OTHER) and not bus.has_handlers(SENDING)
    bus.remove(OTHER, handle)
    assert not bus.has_handlers(OTHER)


async def test_close_delivers_what_is_queued_then_ends(autojump_clock: MockClock) -> None:
    bus = HookBus()
    seen: list[int] = []

    async def watch(p: Other) -> None:
        await trio.sleep(1)
        seen.append(p.n)

    bus.observe(OTHER, watch)
    for n in range(3):
        bus.notify(OTHER, Other(n))  # queued before the dispatcher runs
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        bus.close()
    assert sorted(seen) == [0, 1, 2]
    bus.notify(OTHER, Other(9))
    assert bus.stats()["dropped"] == 1


async def test_a_full_queue_drops_and_counts(autojump_clock: MockClock) -> None:
    bus = HookBus(queue_size=2)

    async def watch(p: Other) -> None:
        pass

    bus.observe(OTHER, watch)
    for n in range(5):
        bus.notify(OTHER, Other(n))
    assert bus.stats()["dropped"] == 3


async def test_a_lane_delivers_in_order_one_at_a_time(
    autojump_clock: MockClock, bus: HookBus
) -> None:
    seen: list[tuple[str, int, float]] = []
    running = 0

    async def record(p: Other) -> None:
        nonlocal running
        running += 1
        assert running == 1  # never two at once on a lane
        seen.append(("lane", p.n, trio.current_time()))
        await trio.sleep(1)
        running -= 1

    async def sending(p: Sending) -> None:
        seen.append(("lane", -1, trio.current_time()))

    async def free(p: Other) -> None:
        seen.append(("free", p.n, trio.current_time()))

    bus.observe(OTHER, record, lane="plugin")
    bus.observe(SENDING, sending, lane="plugin")
    bus.observe(OTHER, free)
    start = trio.current_time()
    for n in range(5):
        bus.notify(OTHER, Other(n))
        if n == 2:
            bus.notify(SENDING, Sending("between"))
    await wait_until(lambda: len(seen) == 11)
    lane = [(n, at - start) for kind, n, at in seen if kind == "lane"]
    assert [n for n, _ in lane] == [0, 1, 2, -1, 3, 4]  # notification order, across events
    assert [at for _, at in lane] == [0, 1, 2, 3, 3, 4]
    assert sorted(n for kind, n, _ in seen if kind == "free") == [0, 1, 2, 3, 4]
    assert {at - start for kind, _, at in seen if kind == "free"} == {0}  # not held by the lane
    await wait_until(lambda: not bus._lanes)  # an idle lane keeps no task


async def test_a_slow_lane_keeps_each_call_to_its_timeout(
    autojump_clock: MockClock, bus: HookBus
) -> None:
    done: list[int] = []

    async def stuck(p: Other) -> None:
        if p.n == 0:
            await trio.sleep_forever()
        done.append(p.n)

    bus.observe(OTHER, stuck, lane="slow", timeout_s=3)
    start = trio.current_time()
    bus.notify(OTHER, Other(0))
    bus.notify(OTHER, Other(1))
    await wait_until(lambda: done == [1])
    assert trio.current_time() - start == pytest.approx(3, abs=0.02)
    assert bus.stats()["observer_timeouts"] == 1


async def test_close_gives_lanes_the_longest_timeout_then_cancels(
    autojump_clock: MockClock,
) -> None:
    bus = HookBus(default_timeout_s=10)
    handled: list[int] = []

    async def slow(p: Other) -> None:
        await trio.sleep(4)
        handled.append(p.n)

    bus.observe(OTHER, slow, lane="l", timeout_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        for n in range(10):
            bus.notify(OTHER, Other(n))
        start = trio.current_time()
        bus.close()
    # Ten calls of 4 s each would take 40 s: the stop waited 5 (the longest timeout).
    assert trio.current_time() - start == pytest.approx(5, abs=0.02)
    assert handled == [0]
