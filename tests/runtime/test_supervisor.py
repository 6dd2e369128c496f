"""Supervisor tests, ported from the applicable cases of Erlang/OTP's supervisor_SUITE.

Every test runs on trio's MockClock (`autojump_clock`): waits cost virtual time
only, and what happened is read from a trace of starts and stops.
"""

from __future__ import annotations

import math

import pytest
import trio
from trio.testing import MockClock

from runtime import (
    ACTOR_ESCALATED,
    ACTOR_RESTARTED,
    ChildNotFound,
    ChildRestarted,
    ChildSpec,
    ChildState,
    DuplicateChild,
    DynamicSupervisor,
    InvalidPolicy,
    NodeKind,
    Restart,
    RestartIntensityExceeded,
    StartFailed,
    Strategy,
    Supervisor,
    SupervisorEscalated,
    SupervisorNotRunning,
    SupervisorPolicy,
    SupervisorRef,
    SystemServices,
    supervisor_spec,
)
from tests.helpers import wait_until
from tests.runtime.conftest import Probe, Running, StartError, Trace, start_supervisor

ONE_FOR_ONE = SupervisorPolicy(Strategy.ONE_FOR_ONE, max_restarts=2, within_s=3600)
ONE_FOR_ALL = SupervisorPolicy(Strategy.ONE_FOR_ALL, max_restarts=2, within_s=3600)
REST_FOR_ONE = SupervisorPolicy(Strategy.REST_FOR_ONE, max_restarts=2, within_s=3600)


def probes(trace: Trace, *names: str, **kwargs: object) -> list[Probe]:
    return [Probe(trace, name, **kwargs) for name in names]  # type: ignore[arg-type]


# -- starting and stopping -------------------------------------------------------


async def test_sup_start_normal_starts_in_order_and_stops_in_reverse(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a, b, c = probes(trace, "a", "b", "c")
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [a.spec(), b.spec(), c.spec()])
    assert trace.take() == ["start a", "start b", "start c"]
    assert running.sup.state is ChildState.RUNNING
    await running.stop()
    assert trace.take() == ["stop c", "stop b", "stop a"]
    assert running.error is None
    assert running.sup.state is ChildState.STOPPED


async def test_children_start_one_at_a_time_via_nursery_start(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    """A child is started only after the previous one said it was started."""
    gate = trio.Event()

    async def slow_start(ctx: object, *, task_status: trio.TaskStatus[None]) -> None:
        trace.add("slow starting")
        await gate.wait()
        trace.add("slow started")
        task_status.started()
        await trio.sleep_forever()

    after = Probe(trace, "after")
    sup = Supervisor(
        "sup",
        ONE_FOR_ONE,
        [ChildSpec(name="slow", start=slow_start), after.spec()],
        services=services,
    )
    nursery.start_soon(sup.run)
    await wait_until(lambda: trace.events == ["slow starting"])
    await trio.sleep(10)
    assert trace.events == ["slow starting"]  # "after" waits for "slow"
    gate.set()
    await wait_until(lambda: after.running)
    assert trace.take() == ["slow starting", "slow started", "start after"]
    sup.request_stop()


async def test_sup_start_ignore_child_is_kept_but_not_running(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    ignored = Probe(trace, "child1", ignore_start=True)
    normal = Probe(trace, "child2")
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [])
    assert await running.sup.start_child(ignored.spec()) is None
    await running.sup.start_child(normal.spec())
    rows = {row.name: row.state for row in running.sup.which_children()}
    assert rows == {"child1": ChildState.STOPPED, "child2": ChildState.RUNNING}
    counts = running.sup.count_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 1, 0, 2)
    await running.stop()


async def test_sup_start_ignore_temporary_child_is_not_kept(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    ignored = Probe(trace, "child1", ignore_start=True)
    normal = Probe(trace, "child2")
    running = await start_supervisor(
        nursery,
        services,
        ONE_FOR_ONE,
        [ignored.spec(Restart.TEMPORARY), normal.spec(Restart.TEMPORARY)],
    )
    assert [row.name for row in running.sup.which_children()] == ["child2"]
    counts = running.sup.count_children()
    assert (counts.specs, counts.active) == (1, 1)
    await running.stop()


async def test_sup_start_fail_stops_started_children_and_raises(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a = Probe(trace, "a")
    b = Probe(trace, "b", fail_starts=1)
    c = Probe(trace, "c")
    sup = Supervisor("sup", ONE_FOR_ONE, [a.spec(), b.spec(), c.spec()], services=services)
    with pytest.raises(StartFailed) as info:
        await nursery.start(sup.run)
    assert isinstance(info.value.__cause__, StartError)
    assert "sup: child 'b' failed to start: StartError: b refuses to start" in str(info.value)
    assert trace.take() == ["start a", "start b", "stop a"]
    assert c.starts == 0


async def test_sup_stop_timeout_cancels_a_child_that_ignores_stop(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    polite = Probe(trace, "child1")
    stubborn = Probe(trace, "child2", ignore_stop=True)
    running = await start_supervisor(
        nursery, services, ONE_FOR_ONE, [polite.spec(shutdown_s=1), stubborn.spec(shutdown_s=7)]
    )
    trace.take()
    began = trio.current_time()
    await running.stop()
    assert trace.take() == ["killed child2", "stop child1"]
    assert trio.current_time() - began == pytest.approx(7)  # virtual time: its shutdown_s


async def test_sup_stop_infinity_waits_for_a_slow_but_willing_child(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    slow = Probe(trace, "slow", stop_takes_s=120)
    running = await start_supervisor(
        nursery, services, ONE_FOR_ONE, [slow.spec(shutdown_s=math.inf)]
    )
    trace.take()
    await running.stop()
    assert trace.take() == ["stop slow"]


async def test_child_adm_start_terminate_restart_delete(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    child = Probe(trace, "child1")
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [])
    sup = running.sup
    await sup.start_child(child.spec())
    with pytest.raises(DuplicateChild):
        await sup.start_child(child.spec())
    with pytest.raises(DuplicateChild):
        await sup.restart_child("child1")  # running already
    with pytest.raises(DuplicateChild):
        sup.delete_child("child1")  # running: terminate it first
    await sup.terminate_child("child1")
    assert [(r.name, r.state) for r in sup.which_children()] == [("child1", ChildState.STOPPED)]
    await sup.restart_child("child1")
    assert child.running and child.starts == 2
    await sup.terminate_child("child1")
    sup.delete_child("child1")
    assert sup.which_children() == []
    with pytest.raises(ChildNotFound):
        await sup.terminate_child("child1")
    with pytest.raises(ChildNotFound):
        await sup.restart_child("nobody")
    assert trace.take() == ["start child1", "stop child1", "start child1", "stop child1"]
    await running.stop()
    with pytest.raises(SupervisorNotRunning):
        await sup.start_child(child.spec())


async def test_duplicate_names_in_the_initial_children_are_refused(
    autojump_clock: MockClock, services: SystemServices, trace: Trace
) -> None:
    a1, a2 = Probe(trace, "a"), Probe(trace, "a")
    with pytest.raises(DuplicateChild):
        Supervisor("sup", ONE_FOR_ONE, [a1.spec(), a2.spec()], services=services)


def test_policy_values_are_validated() -> None:
    with pytest.raises(InvalidPolicy, match="max_restarts: -1 is invalid"):
        SupervisorPolicy(max_restarts=-1)
    with pytest.raises(InvalidPolicy, match="within_s"):
        SupervisorPolicy(within_s=0)
    with pytest.raises(InvalidPolicy, match="backoff_max_s"):
        SupervisorPolicy(backoff_min_s=2, backoff_max_s=1)
    with pytest.raises(InvalidPolicy, match="backoff_jitter"):
        SupervisorPolicy(backoff_jitter=1.5)


# -- restart types against normal, shutdown and abnormal exits ----------------------

# (restart type, how the child exits) -> (restarted?, still listed?)
RESTART_TABLE = [
    (Restart.PERMANENT, "normal", True, True),
    (Restart.PERMANENT, "shutdown", True, True),
    (Restart.PERMANENT, "abnormal", True, True),
    (Restart.TRANSIENT, "normal", False, True),
    (Restart.TRANSIENT, "shutdown", False, True),
    (Restart.TRANSIENT, "abnormal", True, True),
    (Restart.TEMPORARY, "normal", False, False),
    (Restart.TEMPORARY, "shutdown", False, False),
    (Restart.TEMPORARY, "abnormal", False, False),
]


@pytest.mark.parametrize(("restart", "how", "restarted", "kept"), RESTART_TABLE)
async def test_restart_type_against_exit_reason(
    autojump_clock: MockClock,
    nursery: trio.Nursery,
    services: SystemServices,
    trace: Trace,
    restart: Restart,
    how: str,
    restarted: bool,
    kept: bool,
) -> None:
    child = Probe(trace, "child1")
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [child.spec(restart)])
    {"normal": child.exit_normal, "shutdown": child.exit_shutdown, "abnormal": child.crash}[how]()
    await wait_until(lambda: child.starts == 2 if restarted else not child.running)
    await trio.sleep(1)
    assert (child.starts == 2) is restarted
    assert child.running is restarted
    names = [row.name for row in running.sup.which_children()]
    assert (names == ["child1"]) is kept
    await running.stop()
    assert running.error is None


async def test_temporary_bystander_is_not_restarted_by_a_group_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    permanent = Probe(trace, "permanent")
    bystander = Probe(trace, "temporary")
    running = await start_supervisor(
        nursery, services, ONE_FOR_ALL, [permanent.spec(), bystander.spec(Restart.TEMPORARY)]
    )
    trace.take()
    permanent.crash()
    await wait_until(lambda: permanent.starts == 2)
    assert trace.take() == ["crash permanent", "stop temporary", "start permanent"]
    assert [row.name for row in running.sup.which_children()] == ["permanent"]
    await running.stop()


# -- one_for_one -----------------------------------------------------------------


async def test_one_for_one_restarts_only_the_failed_child_then_escalates(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a, b = probes(trace, "child1", "child2")
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [a.spec(), b.spec()])
    trace.take()
    a.crash()
    await wait_until(lambda: a.starts == 2)
    assert trace.take() == ["crash child1", "start child1"]
    assert b.starts == 1 and b.running
    counts = running.sup.count_children()
    assert (counts.specs, counts.active) == (2, 2)
    # Restart intensity: 2 restarts allowed; the third failure escalates.
    b.crash()
    await wait_until(lambda: b.starts == 2)
    a.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)
    assert "exceeded its restart intensity (2 restarts within 3600 s)" in str(running.error)
    assert not a.running and not b.running
    assert trace.take()[-1] == "stop child2"


async def test_one_for_one_escalation_counts_failed_restart_attempts(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a = Probe(trace, "child1")
    b = Probe(trace, "child2")
    policy = SupervisorPolicy(Strategy.ONE_FOR_ONE, max_restarts=4, within_s=3600)
    running = await start_supervisor(nursery, services, policy, [a.spec(), b.spec()])
    a.fail_starts = 100  # every restart attempt of child1 fails from now on
    trace.take()
    a.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)
    assert a.starts == 1 + 4  # four failed attempts allowed, the fifth escalates
    assert trace.take()[-1] == "stop child2"


# -- one_for_all -----------------------------------------------------------------


async def test_one_for_all_restarts_every_child_in_order(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a, b, c = probes(trace, "child1", "child2", "child3")
    running = await start_supervisor(nursery, services, ONE_FOR_ALL, [a.spec(), b.spec(), c.spec()])
    trace.take()
    b.crash()
    await wait_until(lambda: c.starts == 2)
    assert trace.take() == [
        "crash child2",
        "stop child3",
        "stop child1",
        "start child1",
        "start child2",
        "start child3",
    ]
    a.crash()
    await wait_until(lambda: c.starts == 3)
    c.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)


async def test_one_for_all_escalation_when_a_child_cannot_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a, b = probes(trace, "child1", "child2")
    policy = SupervisorPolicy(Strategy.ONE_FOR_ALL, max_restarts=4, within_s=3600)
    running = await start_supervisor(nursery, services, policy, [a.spec(), b.spec()])
    b.fail_starts = 100
    a.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)
    assert b.starts == 1 + 4  # four failed attempts allowed, the fifth escalates
    assert not a.running and not b.running


async def test_one_for_all_other_child_fails_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    """A restarted child is stopped again when a sibling fails to restart; then all restart."""
    a, b = probes(trace, "child1", "child2")
    policy = SupervisorPolicy(Strategy.ONE_FOR_ALL, max_restarts=3, within_s=3600)
    running = await start_supervisor(nursery, services, policy, [a.spec(), b.spec()])
    trace.take()
    b.fail_starts = 1
    a.crash()
    await wait_until(lambda: b.running and a.starts == 3)
    assert trace.take() == [
        "crash child1",
        "stop child2",
        "start child1",
        "start child2",  # fails
        "stop child1",  # the restarted child1 is terminated again
        "start child1",
        "start child2",
    ]
    await running.stop()
    assert running.error is None


async def test_sibling_failing_during_a_group_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    """A sibling that crashes while being stopped for the group restart is restarted once."""
    a = Probe(trace, "child1")
    b = Probe(trace, "child2", ignore_stop=True)
    c = Probe(trace, "child3")
    policy = SupervisorPolicy(Strategy.ONE_FOR_ALL, max_restarts=5, within_s=3600)
    running = await start_supervisor(
        nursery, services, policy, [a.spec(), b.spec(shutdown_s=30), c.spec()]
    )
    trace.take()
    a.crash()
    # child2 ignores the stop request; make it crash while the supervisor waits for it.
    await wait_until(lambda: "stop child3" in trace.events)
    b.crash()
    await wait_until(lambda: c.starts == 2)
    await trio.sleep(5)
    assert trace.take() == [
        "crash child1",
        "stop child3",
        "crash child2",
        "start child1",
        "start child2",
        "start child3",
    ]
    assert (a.starts, b.starts, c.starts) == (2, 2, 2)  # its crash caused no second restart
    await running.stop()
    assert running.error is None


# -- rest_for_one ----------------------------------------------------------------


async def test_rest_for_one_restarts_the_child_and_those_after_it(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a, b, c = probes(trace, "child1", "child2", "child3")
    running = await start_supervisor(
        nursery, services, REST_FOR_ONE, [a.spec(), b.spec(), c.spec()]
    )
    trace.take()
    b.crash()
    await wait_until(lambda: c.starts == 2)
    assert trace.take() == ["crash child2", "stop child3", "start child2", "start child3"]
    assert a.starts == 1
    counts = running.sup.count_children()
    assert (counts.specs, counts.active) == (3, 3)
    c.crash()
    await wait_until(lambda: c.starts == 3)
    assert a.starts == 1 and b.starts == 2
    b.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)


async def test_rest_for_one_escalation(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    a, b = probes(trace, "child1", "child2")
    policy = SupervisorPolicy(Strategy.REST_FOR_ONE, max_restarts=4, within_s=3600)
    running = await start_supervisor(nursery, services, policy, [a.spec(), b.spec()])
    b.fail_starts = 100
    a.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)
    assert not a.running


async def test_rest_for_one_other_child_fails_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    """When a later child fails to restart, only it (and those after it) are retried."""
    a, b = probes(trace, "child1", "child2")
    policy = SupervisorPolicy(Strategy.REST_FOR_ONE, max_restarts=3, within_s=3600)
    running = await start_supervisor(nursery, services, policy, [a.spec(), b.spec()])
    trace.take()
    b.fail_starts = 1
    a.crash()
    await wait_until(lambda: b.running and b.starts == 3)
    assert trace.take() == [
        "crash child1",
        "stop child2",
        "start child1",
        "start child2",  # fails
        "start child2",  # retried alone: child1 is not restarted again
    ]
    assert a.starts == 2
    await running.stop()


# -- the dynamic supervisor (simple_one_for_one) -------------------------------------


async def test_simple_one_for_one_restarts_only_the_failed_child(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [], cls=DynamicSupervisor)
    a, b = probes(trace, "child1", "child2")
    await running.sup.start_child(a.spec())
    await running.sup.start_child(b.spec())
    a.crash()
    await wait_until(lambda: a.starts == 2)
    assert b.starts == 1
    assert [row.name for row in running.sup.which_children()] == ["child1", "child2"]
    b.crash()
    await wait_until(lambda: b.starts == 2)
    a.crash()
    await running.done.wait()
    assert isinstance(running.error, RestartIntensityExceeded)
    assert not b.running


async def test_simple_one_for_one_forgets_children_it_does_not_restart(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [], cls=DynamicSupervisor)
    transient, kept = probes(trace, "transient", "kept")
    await running.sup.start_child(transient.spec(Restart.TRANSIENT))
    await running.sup.start_child(kept.spec())
    transient.exit_normal()
    await wait_until(lambda: len(running.sup.which_children()) == 1)
    await running.sup.terminate_child("kept")
    assert running.sup.which_children() == []
    await running.stop()


async def test_simple_one_for_one_stops_all_children_at_once(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    """Graceful children stop within their budget; the stubborn one is cancelled at its own."""
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [], cls=DynamicSupervisor)
    quick1 = Probe(trace, "quick1", stop_takes_s=1)
    quick2 = Probe(trace, "quick2", stop_takes_s=1)
    stubborn = Probe(trace, "stubborn", ignore_stop=True)
    for probe in (quick1, quick2, stubborn):
        await running.sup.start_child(probe.spec(shutdown_s=2))
    began = trio.current_time()
    await running.stop()
    took = trio.current_time() - began
    assert took == pytest.approx(2)  # concurrent: the longest budget, not the sum
    assert sorted(trace.take()[3:]) == ["killed stubborn", "stop quick1", "stop quick2"]


async def test_dynamic_supervisor_requires_one_for_one(
    autojump_clock: MockClock, services: SystemServices
) -> None:
    with pytest.raises(InvalidPolicy, match="one_for_one"):
        DynamicSupervisor("dyn", ONE_FOR_ALL, services=services)


async def test_count_and_list_1000_dynamic_children(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    running = await start_supervisor(nursery, services, ONE_FOR_ONE, [], cls=DynamicSupervisor)
    kids = [Probe(trace, f"child{i}") for i in range(2000)]
    for kid in kids[:1000]:
        await running.sup.start_child(kid.spec(Restart.TEMPORARY))
    counts = running.sup.count_children()
    listed = running.sup.which_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (
        1000,
        1000,
        0,
        1000,
    )
    assert len(listed) == 1000 and listed[0].name == "child0" and listed[-1].name == "child999"
    for kid in kids[1000:]:
        await running.sup.start_child(kid.spec(Restart.TEMPORARY))
    assert running.sup.count_children().active == 2000
    assert running.sup.which_children() == running.sup.which_children()
    for row in running.sup.which_children():
        await running.sup.terminate_child(row.name)
    assert running.sup.count_children().specs == 0
    await running.stop()


# -- trees, loops, shutdown races ----------------------------------------------------


async def test_tree_restarts_a_subtree_and_drops_its_dynamic_children(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    w1, w2 = probes(trace, "w1", "w2")
    handle = SupervisorRef("supchild2")
    sub1 = supervisor_spec(
        "supchild1", SupervisorPolicy(max_restarts=4, within_s=3600), [w1.spec(), w2.spec()]
    )
    sub2 = supervisor_spec(
        "supchild2",
        SupervisorPolicy(max_restarts=0, within_s=3600),
        dynamic=True,
        handle=handle,
    )
    running = await start_supervisor(
        nursery, services, SupervisorPolicy(Strategy.ONE_FOR_ALL, 4, 3600), [sub1, sub2]
    )
    counts = running.sup.count_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 2, 2, 0)
    w3 = Probe(trace, "w3")
    first = handle.current
    await handle.start_child(w3.spec())
    assert first.count_children().active == 1
    # supchild2 tolerates no restart: w3's crash escalates, and the one_for_all
    # top restarts both subtrees; the dynamic child is not brought back.
    w3.crash()
    await wait_until(lambda: w1.starts == 2 and handle._current not in (None, first))
    assert handle.current.which_children() == []
    assert w3.starts == 1
    snapshot = running.sup.snapshot()
    assert [(n.name, n.restarts) for n in snapshot.children] == [("supchild1", 1), ("supchild2", 1)]
    assert [n.name for n in snapshot.children[0].children] == ["w1", "w2"]
    await running.stop()


async def test_hanging_restart_loop_still_stops_promptly(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    """A child failing every restart, with backoff: a stop request interrupts the loop."""
    looping = Probe(trace, "looping")
    policy = SupervisorPolicy(max_restarts=1000, within_s=3600, backoff_min_s=1, backoff_max_s=60)
    running = await start_supervisor(nursery, services, policy, [looping.spec()])
    looping.fail_starts = 10_000
    looping.crash()
    await wait_until(lambda: looping.starts >= 6)
    began = trio.current_time()
    await running.stop()
    assert trio.current_time() - began < 1  # not waiting out the 60 s backoff
    assert running.error is None
    assert running.sup.state is ChildState.STOPPED


async def test_backoff_doubles_between_restarts_up_to_its_cap(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    child = Probe(trace, "child")
    policy = SupervisorPolicy(max_restarts=100, within_s=3600, backoff_min_s=1, backoff_max_s=4)
    running = await start_supervisor(nursery, services, policy, [child.spec()])
    times: list[float] = []
    for n in range(2, 7):
        child.crash()
        crashed_at = trio.current_time()
        await wait_until(lambda n=n: child.starts == n)  # type: ignore[misc]
        times.append(round(trio.current_time() - crashed_at))
    assert times == [1, 2, 4, 4, 4]
    await running.stop()


def test_backoff_jitter_takes_off_at_most_its_fraction() -> None:
    import random

    policy = SupervisorPolicy(backoff_min_s=1, backoff_max_s=8, backoff_jitter=0.5)
    rng = random.Random(7)
    waits = [policy.backoff_s(3, rng) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits)
    assert len({round(w, 6) for w in waits}) > 100
    assert SupervisorPolicy().backoff_s(5, rng) == 0.0


async def test_restarts_older_than_the_window_do_not_count(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    child = Probe(trace, "child")
    policy = SupervisorPolicy(max_restarts=2, within_s=10)
    running = await start_supervisor(nursery, services, policy, [child.spec()])
    for n in range(2, 12):
        child.crash()
        await wait_until(lambda n=n: child.starts == n)  # type: ignore[misc]
        await trio.sleep(6)  # at most two restarts ever fall within 10 s
    assert running.error is None
    await running.stop()


async def test_children_exiting_on_their_own_during_shutdown(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    first = Probe(trace, "first")
    second = Probe(trace, "second")
    last = Probe(trace, "last", ignore_stop=True)
    running = await start_supervisor(
        nursery, services, ONE_FOR_ONE, [first.spec(), second.spec(), last.spec(shutdown_s=30)]
    )
    trace.take()
    stopping = trio.Event()

    async def stop() -> None:
        await running.stop()
        stopping.set()

    nursery.start_soon(stop)
    await wait_until(lambda: running.sup.state is ChildState.STOPPING)
    first.crash()  # dies on its own while "last" is being waited for
    second.exit_normal()
    await stopping.wait()
    assert running.error is None
    assert first.starts == 1 and second.starts == 1  # nothing restarted during shutdown
    events = trace.take()
    assert sorted(events[:2]) == ["crash first", "exit second"]  # in either order
    assert events[2:] == ["killed last"]


async def test_restart_and_escalation_emit_hook_events(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    seen: list[object] = []

    async def record(payload: object) -> None:
        seen.append(payload)

    services.hooks.observe(ACTOR_RESTARTED, record)
    services.hooks.observe(ACTOR_ESCALATED, record)
    await nursery.start(services.hooks.run)
    child = Probe(trace, "child")
    policy = SupervisorPolicy(max_restarts=1, within_s=3600)
    running = await start_supervisor(nursery, services, policy, [child.spec()])
    child.crash()
    await wait_until(lambda: child.starts == 2)
    child.crash()
    await running.done.wait()
    await wait_until(lambda: len(seen) == 2)
    restarted, escalated = seen
    assert isinstance(restarted, ChildRestarted)
    assert (restarted.supervisor, restarted.child, restarted.reason, restarted.restarts) == (
        "sup",
        "child",
        "abnormal",
        1,
    )
    assert restarted.error == "Crash: child crashed"
    assert isinstance(escalated, SupervisorEscalated)
    assert escalated.supervisor == "sup" and escalated.max_restarts == 1


async def test_snapshot_shows_kind_state_restarts_and_depth(
    autojump_clock: MockClock, nursery: trio.Nursery, services: SystemServices, trace: Trace
) -> None:
    child = Probe(trace, "worker")
    running: Running = await start_supervisor(nursery, services, ONE_FOR_ONE, [child.spec()])
    child.crash()
    await wait_until(lambda: child.starts == 2)
    snap = running.sup.snapshot()
    assert snap.kind is NodeKind.SUPERVISOR and snap.state is ChildState.RUNNING
    (node,) = snap.children
    assert (node.name, node.kind, node.state, node.restarts, node.mailbox_depth) == (
        "worker",
        NodeKind.WORKER,
        ChildState.RUNNING,
        1,
        None,
    )
    assert snap.to_dict()["children"][0]["restarts"] == 1
    assert "worker [worker] running restarts=1" in snap.render()
    await running.stop()
