"""Actors under a real supervisor: tell, ask, crashes, restarts and stops."""

from __future__ import annotations

from typing import ClassVar

import pytest
import trio
from trio.testing import MockClock

from runtime import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorRestarted,
    ActorStopped,
    AskTimeout,
    ChildState,
    Message,
    NodeKind,
    Restart,
    Strategy,
    SupervisorPolicy,
    SystemServices,
    actor_spec,
)
from tests.helpers import wait_until
from tests.runtime.conftest import Probe, Trace, start_supervisor

POLICY = SupervisorPolicy(max_restarts=10, within_s=60)


class Add(Message):
    n: int


class Get(Message):
    pass


class Boom(Message):
    why: str


class Slow(Message):
    seconds: float


class NotAllowed(Exception):
    pass


class Refuse(Message):
    pass


class Counter(Actor[Message]):
    """Keeps a running total; crashes on Boom; refuses Refuse without crashing."""

    reply_errors = (NotAllowed,)
    started: ClassVar[int] = 0
    stopped: ClassVar[int] = 0
    seen: ClassVar[list[int]] = []

    def __init__(self) -> None:
        self.total = 0

    async def on_start(self) -> None:
        Counter.started += 1

    async def receive(self, message: Message) -> object:
        if isinstance(message, Add):
            self.total += message.n
            Counter.seen.append(message.n)
            return self.total
        if isinstance(message, Get):
            return self.total
        if isinstance(message, Boom):
            raise ValueError(message.why)
        if isinstance(message, Slow):
            await trio.sleep(message.seconds)
            return "slept"
        if isinstance(message, Refuse):
            raise NotAllowed("no")
        raise TypeError(type(message).__name__)

    async def on_stop(self) -> None:
        Counter.stopped += 1


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    Counter.started = 0
    Counter.stopped = 0
    Counter.seen = []


async def start_counter(
    nursery: trio.Nursery, services: SystemServices, **kwargs: object
) -> tuple[ActorRef[Message], object]:
    running = await start_supervisor(
        nursery,
        services,
        POLICY,
        [actor_spec("counter", Counter, **kwargs)],  # type: ignore[arg-type]
    )
    return services.registry.lookup("counter"), running


async def test_tell_then_ask_sees_every_message_in_order(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, _ = await start_counter(nursery, services)
    for n in range(1, 101):
        await ref.tell(Add(n=n))
    assert await ref.ask(Get(), 1) == 5050
    assert Counter.seen == list(range(1, 101))


async def test_ask_returns_the_reply(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, _ = await start_counter(nursery, services)
    assert await ref.ask(Add(n=2), 1) == 2
    assert await ref.ask(Add(n=3), 1) == 5


async def test_ask_times_out_and_the_expired_message_is_skipped(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, _ = await start_counter(nursery, services)
    await ref.tell(Slow(seconds=10))
    with pytest.raises(AskTimeout, match=r"ask Add to 'counter' got no reply within 2 s"):
        await ref.ask(Add(n=7), 2)
    assert await ref.ask(Get(), 20) == 0  # the expired Add was never applied
    assert services.dead_letters.counts() == {"ask_expired": 1}


async def test_a_crash_fails_its_ask_with_the_cause_and_queued_messages_survive(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, running = await start_counter(nursery, services)
    await ref.tell(Add(n=5))
    await ref.tell(Slow(seconds=10))  # keeps it busy while the next two queue up
    await wait_until(lambda: ref.depth == 0)
    results: dict[str, object] = {}

    async def ask_boom() -> None:
        try:
            await ref.ask(Boom(why="bad input"), 50)
        except ActorCrashed as exc:
            results["boom"] = exc

    async def ask_after() -> None:
        results["after"] = await ref.ask(Add(n=1), 50)

    async with trio.open_nursery() as inner:
        inner.start_soon(ask_boom)
        await wait_until(lambda: ref.depth == 1)
        inner.start_soon(ask_after)
        await wait_until(lambda: ref.depth == 2)
    crash = results["boom"]
    assert isinstance(crash, ActorCrashed)
    assert "handler raised ValueError: bad input" in str(crash)
    assert isinstance(crash.__cause__, ValueError)
    # The Add queued behind the crash was handled by the fresh incarnation
    # (whose total starts from zero again).
    assert results["after"] == 1
    assert Counter.started == 2
    assert running.sup.which_children()[0].restarts == 1  # type: ignore[attr-defined]


async def test_reply_errors_go_back_to_the_asker_without_a_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, _ = await start_counter(nursery, services)
    await ref.ask(Add(n=4), 1)
    with pytest.raises(NotAllowed):
        await ref.ask(Refuse(), 1)
    assert await ref.ask(Get(), 1) == 4
    assert Counter.started == 1


async def test_ask_fails_at_once_when_the_actor_is_restarted_while_holding_it(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    sibling = Probe(trace, "sibling")
    policy = SupervisorPolicy(Strategy.ONE_FOR_ALL, max_restarts=5, within_s=60)
    await start_supervisor(
        nursery,
        services,
        policy,
        [actor_spec("counter", Counter, shutdown_s=1), sibling.spec()],
    )
    ref = services.registry.lookup("counter")
    failed: list[BaseException] = []

    async def ask_slow() -> None:
        try:
            await ref.ask(Slow(seconds=1000), 2000)
        except ActorRestarted as exc:
            failed.append(exc)

    nursery.start_soon(ask_slow)
    await wait_until(lambda: ref.depth == 0 and Counter.started == 1)
    asked_at = trio.current_time()
    sibling.crash()  # one_for_all: the busy counter is stopped, then cancelled after 1 s
    await wait_until(lambda: bool(failed))
    assert trio.current_time() - asked_at < 2  # not its 2000 s deadline
    assert "restarted while handling it" in str(failed[0])
    assert await ref.ask(Get(), 1) == 0


async def test_ask_fails_at_once_when_the_actor_is_stopped(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, running = await start_counter(nursery, services)
    await running.sup.terminate_child("counter")  # type: ignore[attr-defined]
    assert ref.closed
    with pytest.raises(ActorStopped, match="stopped and its mailbox closed"):
        await ref.ask(Get(), 100)
    await ref.tell(Add(n=1))
    assert services.dead_letters.counts() == {"actor_stopped": 2}


async def test_final_stop_drains_what_was_queued(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, running = await start_counter(nursery, services)
    for n in range(10):
        ref.tell_nowait(Add(n=n))
    await running.stop()  # type: ignore[attr-defined]
    assert Counter.seen == list(range(10))
    assert Counter.stopped == 1


async def test_stop_budget_cuts_the_drain_and_fails_the_rest(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, running = await start_counter(nursery, services, shutdown_s=5)
    outcomes: list[object] = []

    async def ask(message: Message) -> None:
        try:
            outcomes.append(await ref.ask(message, 1000))
        except ActorStopped as exc:
            outcomes.append(type(exc).__name__)

    nursery.start_soon(ask, Slow(seconds=3))
    await wait_until(lambda: ref.depth == 0 and Counter.started == 1)
    nursery.start_soon(ask, Slow(seconds=3))
    nursery.start_soon(ask, Slow(seconds=3))
    await wait_until(lambda: ref.depth == 2)
    await running.stop()  # type: ignore[attr-defined]
    await wait_until(lambda: len(outcomes) == 3)
    # 5 s: the first finishes (3 s), the second is cut at 5 s, the third never starts.
    assert outcomes == ["slept", "ActorStopped", "ActorStopped"]
    assert Counter.stopped == 1  # on_stop ran although the actor was cancelled


async def test_on_start_failure_is_a_start_failure(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    class Broken(Actor[Message]):
        async def on_start(self) -> None:
            raise OSError("port in use")

    running = await start_supervisor(nursery, services, POLICY, [])
    from runtime import StartFailed

    with pytest.raises(StartFailed, match="child 'broken' failed to start: OSError: port in use"):
        await running.sup.start_child(actor_spec("broken", Broken))
    assert "broken" not in services.registry


async def test_temporary_actor_is_unregistered_when_it_ends(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, running = await start_counter(nursery, services, restart=Restart.TEMPORARY)
    with pytest.raises(ActorCrashed):
        await ref.ask(Boom(why="x"), 1)
    await wait_until(lambda: "counter" not in services.registry)
    assert running.sup.which_children() == []  # type: ignore[attr-defined]
    with pytest.raises(ActorStopped):
        await ref.ask(Get(), 1)


async def test_snapshot_reports_actor_kind_and_mailbox_depth(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    ref, running = await start_counter(nursery, services)
    await ref.tell(Slow(seconds=100))
    await wait_until(lambda: ref.depth == 0)
    for n in range(3):
        await ref.tell(Add(n=n))
    node = running.sup.snapshot().children[0]  # type: ignore[attr-defined]
    assert (node.kind, node.state, node.mailbox_depth) == (NodeKind.ACTOR, ChildState.RUNNING, 3)


async def test_many_producers_one_actor_lose_nothing(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    from runtime import MailboxSpec

    ref, _ = await start_counter(nursery, services, mailbox=MailboxSpec(capacity=8))

    async def produce(base: int) -> None:
        for i in range(200):
            await ref.tell(Add(n=base + i))

    async with trio.open_nursery() as producers:
        for p in range(5):
            producers.start_soon(produce, p * 1000)
    assert await ref.ask(Get(), 10) == sum(p * 1000 * 200 + sum(range(200)) for p in range(5))
    assert len(Counter.seen) == 1000


class Later(Message):
    value: int


class Deferring(Actor[Message]):
    """Answers Later asks from a background task, after a while."""

    background = True

    async def receive(self, message: Message) -> object:
        reply = self.defer_reply()
        assert reply is not None
        assert isinstance(message, Later)

        async def answer() -> None:
            await trio.sleep(5)
            reply.set_value(message.value * 10)

        self.nursery.start_soon(answer)
        return "ignored: the reply was deferred"


async def test_a_deferred_reply_lets_the_actor_take_the_next_message(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    await start_supervisor(nursery, services, POLICY, [actor_spec("later", Deferring)])
    ref = services.registry.lookup("later")
    results: list[int] = []
    began = trio.current_time()
    async with trio.open_nursery() as asks:
        for n in range(3):
            asks.start_soon(lambda n=n: _collect(ref, n, results))  # type: ignore[misc]
    assert sorted(results) == [0, 10, 20]
    assert trio.current_time() - began == pytest.approx(5)  # concurrently, not 15 s


async def _collect(ref: ActorRef[Message], n: int, results: list[int]) -> None:
    results.append(await ref.ask(Later(value=n), 10))


class Idler(Actor[Message]):
    idle_timeout_s = 30.0
    idles: ClassVar[list[float]] = []

    async def receive(self, message: Message) -> object:
        return None

    async def on_idle(self) -> None:
        Idler.idles.append(trio.current_time())
        if len(Idler.idles) == 2:
            self.stop()


async def test_idle_timeout_calls_on_idle_and_an_actor_can_stop_itself(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices
) -> None:
    Idler.idles = []
    running = await start_supervisor(
        nursery, services, POLICY, [actor_spec("idler", Idler, restart=Restart.TRANSIENT)]
    )
    ref = services.registry.lookup("idler")
    start = trio.current_time()
    await trio.sleep(20)
    await ref.tell(Get())  # activity resets the idle clock
    await wait_until(lambda: len(Idler.idles) == 2, timeout_s=200)
    assert [round(t - start) for t in Idler.idles] == [50, 80]
    await wait_until(lambda: running.sup.which_children()[0].state is ChildState.STOPPED)  # type: ignore[attr-defined]
    assert ref.closed  # stopped for good: transient, shutdown exit, not restarted
    assert running.sup.which_children()[0].restarts == 0  # type: ignore[attr-defined]


class Background(Actor[Message]):
    background = True
    drain: ClassVar[bool] = False
    finished: ClassVar[list[str]] = []

    async def on_start(self) -> None:
        async def work() -> None:
            await trio.sleep(3)
            Background.finished.append("work")

        self.nursery.start_soon(work)

    async def receive(self, message: Message) -> object:
        return None


class Draining(Background):
    drain_background = True


@pytest.mark.parametrize(("cls", "expected"), [(Background, []), (Draining, ["work"])])
async def test_background_work_is_cancelled_or_drained_at_stop(
    autojump_clock: MockClock,
    nursery: trio.Nursery,
    services: SystemServices,
    cls: type[Background],
    expected: list[str],
) -> None:
    Background.finished = []
    running = await start_supervisor(
        nursery, services, POLICY, [actor_spec("bg", cls, shutdown_s=10)]
    )
    await running.stop()  # type: ignore[attr-defined]
    assert Background.finished == expected
