"""The actor system: phases of a graceful stop, escalation, signals."""

from __future__ import annotations

import functools
import os
import signal
from dataclasses import dataclass, field

import pytest
import trio
from trio.testing import MockClock

from runtime import (
    EXIT_FAILED,
    EXIT_FORCED,
    EXIT_OK,
    ActorSystem,
    ChildState,
    ShutdownPhase,
    ShuttingDown,
    SupervisorPolicy,
    supervisor_spec,
)
from tests.helpers import wait_until
from tests.runtime.conftest import Probe, Trace


@dataclass
class Outcome:
    code: int | None = None
    done: trio.Event = field(default_factory=trio.Event)


async def _run(
    system: ActorSystem,
    root: object,
    outcome: Outcome,
    handle_signals: bool,
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    try:
        outcome.code = await system.run(
            root, handle_signals=handle_signals, task_status=task_status
        )  # type: ignore[arg-type]
    finally:
        outcome.done.set()


async def start_system(
    nursery: trio.Nursery, system: ActorSystem, root: object, *, handle_signals: bool = False
) -> Outcome:
    outcome = Outcome()
    await nursery.start(functools.partial(_run, system, root, outcome, handle_signals))
    return outcome


def tree(trace: Trace, *names: str) -> tuple[object, list[Probe]]:
    probes = [Probe(trace, name) for name in names]
    root = supervisor_spec(
        "root", SupervisorPolicy(max_restarts=1, within_s=60), [p.spec() for p in probes]
    )
    return root, probes


async def test_graceful_stop_runs_the_phases_in_order(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem(shutdown_grace_s=30)
    root, _ = tree(trace, "store", "models", "channels")

    def phase_task(name: str):  # type: ignore[no-untyped-def]
        async def task() -> None:
            trace.add(f"phase {name} ({system.inflight.count} in flight)")

        return task

    for phase in ShutdownPhase:
        system.on_shutdown(phase, phase.value, phase_task(phase.value))
    outcome = await start_system(nursery, system, root)
    trace.take()
    finished = trio.Event()

    async def request() -> None:
        with system.inflight.track("ws"):
            await trio.sleep(10)
            trace.add("request done")
        finished.set()

    nursery.start_soon(request)
    await wait_until(lambda: system.inflight.count == 1)
    system.request_stop("test")
    await outcome.done.wait()
    assert outcome.code == EXIT_OK
    assert trace.take() == [
        "phase stop_intake (1 in flight)",
        "request done",  # drained before the actors stop
        "phase drain (0 in flight)",
        "stop channels",
        "stop models",
        "stop store",
        "phase close_resources (0 in flight)",
    ]


async def test_new_work_is_refused_once_stopping(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem()
    root, _ = tree(trace, "a")
    refused: list[Exception] = []

    async def intake() -> None:
        try:
            with system.inflight.track("http"):
                pass
        except ShuttingDown as exc:
            refused.append(exc)

    system.on_shutdown(ShutdownPhase.STOP_INTAKE, "probe", intake)
    outcome = await start_system(nursery, system, root)
    assert not system.stopping
    system.request_stop()
    await outcome.done.wait()
    assert system.stopping and len(refused) == 1


async def test_the_drain_deadline_passes_and_the_stop_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem(shutdown_grace_s=5)
    root, _ = tree(trace, "a")
    cancel_stuck = trio.CancelScope()

    async def stuck() -> None:
        with cancel_stuck, system.inflight.track("ws"):
            await trio.sleep_forever()
        trace.add("stuck request ended by the drain phase")

    async def end_leftovers() -> None:
        cancel_stuck.cancel()

    system.on_shutdown(ShutdownPhase.DRAIN, "end leftovers", end_leftovers)
    outcome = await start_system(nursery, system, root)
    nursery.start_soon(stuck)
    await wait_until(lambda: system.inflight.count == 1)
    trace.take()
    began = trio.current_time()
    system.request_stop()
    await outcome.done.wait()
    assert trio.current_time() - began == pytest.approx(5, abs=0.1)
    assert outcome.code == EXIT_OK
    assert trace.take() == ["stuck request ended by the drain phase", "stop a"]


async def test_a_failing_or_slow_phase_task_does_not_block_the_stop(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem(phase_timeout_s=2)
    root, _ = tree(trace, "a")

    async def broken() -> None:
        raise RuntimeError("flush failed")

    async def hangs() -> None:
        await trio.sleep_forever()

    system.on_shutdown(ShutdownPhase.STOP_INTAKE, "broken", broken)
    system.on_shutdown(ShutdownPhase.CLOSE_RESOURCES, "hangs", hangs)
    outcome = await start_system(nursery, system, root)
    system.request_stop()
    await outcome.done.wait()
    assert outcome.code == EXIT_OK
    assert "stop a" in trace.events


async def test_root_escalation_stops_the_system_with_exit_code_1(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem()
    root, (a, b) = tree(trace, "a", "b")
    outcome = await start_system(nursery, system, root)
    a.crash()
    await wait_until(lambda: a.starts == 2)
    a.crash()  # a second restart within the window: max_restarts=1 is exceeded
    await outcome.done.wait()
    assert outcome.code == EXIT_FAILED
    assert not a.running and not b.running


async def test_a_tree_that_cannot_start_exits_1(autojump_clock: MockClock, trace: Trace) -> None:
    system = ActorSystem()
    broken = Probe(trace, "broken", fail_starts=1)
    root = supervisor_spec("root", SupervisorPolicy(), [broken.spec()])
    assert await system.run(root, handle_signals=False) == EXIT_FAILED


async def test_snapshot_of_the_live_tree(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem()
    assert system.snapshot() is None
    inner = supervisor_spec("inner", SupervisorPolicy(), [Probe(trace, "leaf").spec()])
    root = supervisor_spec("root", SupervisorPolicy(), [inner])
    outcome = await start_system(nursery, system, root)
    snap = system.snapshot()
    assert snap is not None
    assert snap.render().splitlines() == [
        "root [supervisor] running restarts=0",
        "  inner [supervisor] running restarts=0",
        "    leaf [worker] running restarts=0",
    ]
    system.request_stop()
    await outcome.done.wait()
    stopped = system.snapshot()
    assert stopped is not None and stopped.state is ChildState.STOPPED


async def test_sigterm_stops_gracefully_and_a_second_sigint_forces(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem(shutdown_grace_s=100_000)
    root, _ = tree(trace, "a")
    outcome = await start_system(nursery, system, root, handle_signals=True)

    async def forever() -> None:
        with system.inflight.track("ws"):
            await trio.sleep_forever()

    nursery.start_soon(forever)
    await wait_until(lambda: system.inflight.count == 1)
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_until(lambda: system.phase is ShutdownPhase.DRAIN)
    os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
    await trio.sleep(1)
    assert system.phase is ShutdownPhase.DRAIN
    os.kill(os.getpid(), signal.SIGINT)
    await outcome.done.wait()
    assert outcome.code == EXIT_FORCED


async def test_sigint_alone_is_a_graceful_stop(
    autojump_clock: MockClock, nursery: trio.Nursery, trace: Trace
) -> None:
    system = ActorSystem()
    root, _ = tree(trace, "a")
    outcome = await start_system(nursery, system, root, handle_signals=True)
    trace.take()
    os.kill(os.getpid(), signal.SIGINT)
    await outcome.done.wait()
    assert outcome.code == EXIT_OK
    assert trace.take() == ["stop a"]
