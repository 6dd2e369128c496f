"""The session store on real files: appends, the index cache, recovery, maintenance."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors.config import MaintenanceConfig, SessionsConfig
from actors.sessions.path_map import PathMap
from actors.sessions.store import (
    AppendRecords,
    FileBackend,
    FlushIndex,
    GetEntry,
    ListEntries,
    MaintenanceReport,
    PutEntry,
    ReadTranscript,
    RunMaintenance,
    SessionEntry,
    StoreActor,
)
from actors.sessions.transcript import encode
from runtime import (
    ActorRef,
    DeadLetters,
    HookBus,
    InflightTracker,
    Registry,
    Supervisor,
    SupervisorPolicy,
    SystemServices,
    actor_spec,
)
from tests.actors.harness import io_clock

DAY_S = 86_400.0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return io_clock()


@asynccontextmanager
async def store(
    root: Path, config: SessionsConfig | None = None, paths: PathMap | None = None
) -> AsyncIterator[tuple[ActorRef[Any], StoreActor]]:
    dead = DeadLetters()
    services = SystemServices(Registry(dead), dead, HookBus(), InflightTracker())
    made: list[StoreActor] = []

    def factory() -> StoreActor:
        made.append(StoreActor(FileBackend(root, paths), config or SessionsConfig()))
        return made[-1]

    sup = Supervisor("root", SupervisorPolicy(), [actor_spec("store", factory)], services=services)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        yield services.registry.lookup("store"), made[-1]
        sup.request_stop()


def entry(key: str, session_id: str, updated_at: float, **extra: Any) -> SessionEntry:
    return SessionEntry(
        key=key, session_id=session_id, created_at=updated_at, updated_at=updated_at, **extra
    )


def header(key: str, session_id: str, ts: float = 1000.0) -> dict[str, Any]:
    return {"type": "session", "key": key, "session_id": session_id, "created_at": ts, "ts": ts}


async def test_appends_are_durable_and_read_back(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with store(tmp_path) as (ref, _):
        await ref.ask(
            AppendRecords(
                session_id="s1", records=(header("a:b:c", "s1"), {"type": "message", "turn": 1})
            ),
            5,
        )
        records = await ref.ask(ReadTranscript(session_id="s1"), 5)
    assert records == [header("a:b:c", "s1"), {"type": "message", "turn": 1}]
    assert (tmp_path / "sessions" / "s1.jsonl").read_bytes().endswith(b"\n")


async def test_concurrent_appends_share_fsyncs(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with store(tmp_path) as (ref, actor):
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(
                    functools.partial(
                        ref.ask, AppendRecords(session_id=f"s{i % 3}", records=({"n": i},)), 5
                    )
                )
        assert actor.stats["appends"] == 60
        assert actor.stats["batches"] < 30  # group commit: many appends per batch
        counts = [len(await ref.ask(ReadTranscript(session_id=f"s{k}"), 5)) for k in range(3)]
    assert counts == [20, 20, 20]


async def test_a_torn_tail_is_cut_before_the_next_append(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    (sessions / "s1.jsonl").write_bytes(encode({"n": 1}) + b'{"n": 2, "half')  # a crash mid-write
    async with store(tmp_path) as (ref, _):
        assert await ref.ask(ReadTranscript(session_id="s1"), 5) == [{"n": 1}]
        await ref.ask(AppendRecords(session_id="s1", records=({"n": 3},)), 5)
        assert await ref.ask(ReadTranscript(session_id="s1"), 5) == [{"n": 1}, {"n": 3}]
    assert (sessions / "s1.jsonl").read_bytes() == encode({"n": 1}) + encode({"n": 3})


async def test_the_index_is_flushed_atomically_and_reloaded(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = SessionsConfig(index_flush_s=3)
    async with store(tmp_path, config) as (ref, actor):
        await ref.tell(PutEntry(entry=entry("main:ws:alice", "s1", 10.0, turns=2, model_pin="p/m")))
        assert not (tmp_path / "sessions" / "index.json").exists()
        await trio.sleep(4)  # index_flush_s later it is on disk
        written = json.loads((tmp_path / "sessions" / "index.json").read_text())
        assert written["sessions"]["main:ws:alice"]["turns"] == 2
        assert actor.stats["index_writes"] == 1
        assert not list((tmp_path / "sessions").glob(".*.tmp"))
    async with store(tmp_path, config) as (ref, _):
        loaded = await ref.ask(GetEntry(key="main:ws:alice"), 5)
    assert loaded.model_pin == "p/m" and loaded.turns == 2
    assert loaded.transcript == str(tmp_path / "sessions" / "s1.jsonl")


async def test_an_outside_edit_is_seen_after_the_ttl(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = SessionsConfig(cache_ttl_s=10, index_flush_s=1)
    async with store(tmp_path, config) as (ref, _):
        await ref.tell(PutEntry(entry=entry("a:b:mine", "s1", 1.0)))
        await ref.ask(FlushIndex(), 5)
        index = tmp_path / "sessions" / "index.json"
        data = json.loads(index.read_text())
        data["sessions"]["a:b:other"] = {"session_id": "s2", "created_at": 2.0, "updated_at": 2.0}
        index.write_text(json.dumps(data) + " ")  # another process (the size changes too)
        await ref.tell(
            PutEntry(entry=entry("a:b:local", "s3", 3.0))
        )  # changed here, not yet written
        assert await ref.ask(GetEntry(key="a:b:other"), 5) is None  # still trusting the cache
        await trio.sleep(11)
        assert (await ref.ask(GetEntry(key="a:b:other"), 5)).session_id == "s2"
        keys = [e.key for e in await ref.ask(ListEntries(), 5)]
    assert keys == ["a:b:local", "a:b:other", "a:b:mine"]  # most recent first; nothing lost


async def test_transcripts_newer_than_the_index_bring_it_up_to_date(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with store(tmp_path) as (ref, _):
        await ref.tell(PutEntry(entry=entry("a:b:known", "s1", 1.0)))
        await ref.ask(FlushIndex(), 5)
    sessions = tmp_path / "sessions"
    old = os.stat(sessions / "index.json").st_mtime
    # As if the daemon was killed after these appends but before its next index flush:
    (sessions / "s1.jsonl").write_bytes(
        encode(header("a:b:known", "s1"))
        + encode({"type": "message", "role": "user", "content": "hi", "turn": 1, "ts": 50.0})
        + encode(
            {
                "type": "message",
                "role": "assistant",
                "content": "yo",
                "turn": 1,
                "ts": 51.0,
                "model": "p/m",
            }
        )
    )
    (sessions / "s9.jsonl").write_bytes(encode(header("a:b:orphan", "s9", ts=60.0)))
    for name in ("s1.jsonl", "s9.jsonl"):
        os.utime(sessions / name, (old + 5, old + 5))
    async with store(tmp_path) as (ref, _):
        known = await ref.ask(GetEntry(key="a:b:known"), 5)
        orphan = await ref.ask(GetEntry(key="a:b:orphan"), 5)
    assert (known.turns, known.last_model, known.updated_at) == (1, "p/m", 51.0)
    assert orphan.session_id == "s9" and orphan.created_at == 60.0


async def test_maintenance_prunes_caps_and_rotates(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = SessionsConfig(
        maintenance=MaintenanceConfig(prune_after_days=30, max_entries=2, rotate_bytes=2048)
    )
    now = __import__("time").time()
    async with store(tmp_path, config) as (ref, _):
        for key, sid, age_days in [
            ("a:b:old", "s1", 40),
            ("a:b:older", "s2", 20),
            ("a:b:mid", "s3", 10),
            ("a:b:new", "s4", 1),
        ]:
            await ref.ask(AppendRecords(session_id=sid, records=(header(key, sid),)), 5)
            await ref.tell(PutEntry(entry=entry(key, sid, now - age_days * DAY_S)))
        big = tuple(
            {"type": "message", "role": r, "content": "x" * 100, "turn": n}
            for n in range(1, 20)
            for r in ("user", "assistant")
        )
        await ref.ask(AppendRecords(session_id="s4", records=big), 5)
        report: MaintenanceReport = await ref.ask(RunMaintenance(dry_run=True), 5)
        assert not report.acted
        assert (report.pruned, report.capped, report.rotated) == (
            ("a:b:old",),
            ("a:b:older",),
            ("s4",),
        )
        assert len(await ref.ask(ListEntries(), 5)) == 4  # a dry run changes nothing
        report = await ref.ask(RunMaintenance(), 5)
        assert report.acted
        assert [e.key for e in await ref.ask(ListEntries(), 5)] == ["a:b:new", "a:b:mid"]
        rotated = await ref.ask(ReadTranscript(session_id="s4"), 5)
    archive = tmp_path / "sessions" / "archive"
    assert sorted(p.name for p in archive.iterdir()) == ["s1.jsonl", "s2.jsonl", "s4.1.jsonl"]
    assert [r["type"] for r in rotated] == ["session", "carry"]
    assert rotated[1]["total_turns"] == 19 and len(rotated[1]["turns"]) == 19
    assert report.lines() == [
        "1 session(s) pruned (idle too long)",
        "  a:b:old",
        "1 session(s) removed to respect max_entries",
        "  a:b:older",
        "1 transcript(s) rotated",
        "  s4",
    ]


async def test_warn_mode_only_reports(clock: trio.testing.MockClock, tmp_path: Path) -> None:
    config = SessionsConfig(maintenance=MaintenanceConfig(mode="warn", prune_after_days=1))
    async with store(tmp_path, config) as (ref, _):
        await ref.tell(PutEntry(entry=entry("a:b:stale", "s1", 0.0)))
        report = await ref.ask(RunMaintenance(), 5)
        assert report.pruned == ("a:b:stale",) and not report.acted
        assert await ref.ask(GetEntry(key="a:b:stale"), 5) is not None


async def test_stored_paths_go_through_the_path_map(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    paths = PathMap({str(tmp_path): "/data"})
    async with store(tmp_path, paths=paths) as (ref, _):
        await ref.tell(PutEntry(entry=entry("a:b:c", "s1", 1.0)))
        await ref.ask(FlushIndex(), 5)
    stored = json.loads((tmp_path / "sessions" / "index.json").read_text())
    assert stored["sessions"]["a:b:c"]["transcript"] == "/data/sessions/s1.jsonl"
    assert paths.to_local("/data/sessions/s1.jsonl") == str(tmp_path / "sessions" / "s1.jsonl")


async def test_a_failing_append_is_the_askers_error_and_the_store_lives_on(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "sessions" / "s1.jsonl").mkdir(parents=True)  # a directory where the file goes
    async with store(tmp_path) as (ref, _):
        with pytest.raises(IsADirectoryError):
            await ref.ask(AppendRecords(session_id="s1", records=({"n": 1},)), 5)
        with pytest.raises(ValueError, match="not a session id"):
            await ref.ask(ReadTranscript(session_id="../etc/passwd"), 5)
        await ref.ask(AppendRecords(session_id="s2", records=({"n": 1},)), 5)
        assert await ref.ask(ReadTranscript(session_id="s2"), 5) == [{"n": 1}]
