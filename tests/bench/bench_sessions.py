"""Benchmark of the session store and session actors, measured in one run.

    python tests/bench/bench_sessions.py [--quick]

Prints, against baselines measured in the same run:

* index load time at 100k sessions (`FileBackend.load_index`, validated
  entries) against a bare `json.loads` of the same file, and a lookup;
* persisting a turn (the user record, then the answer, each acknowledged once
  on disk) through the store actor: p50 and p99, alone and with 50 sessions
  writing at once, against one raw append + fsync on this disk;
* appends per second with group commit (200 concurrent appenders through the
  store) against one fsync per append (the same records, written in turn);
* memory per passivated session (an index entry) and per active session (a
  session actor with a few turns of history), each in a fresh process, and the
  RSS of 10k active sessions.

Targets (issue 4): persisting a turn adds <= 1 ms at p50; 10k active sessions
under 200 MB RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import trio

from actors.config import SessionsConfig
from actors.sessions.store import AppendRecords, FileBackend, SessionEntry, StoreActor
from actors.sessions.transcript import encode
from runtime import (
    DeadLetters,
    HookBus,
    InflightTracker,
    Registry,
    Supervisor,
    SupervisorPolicy,
    SystemServices,
    actor_spec,
)

RECORD: Final = {"type": "message", "role": "user", "content": "x" * 300, "turn": 1, "ts": 0.0}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the index -------------------------------------------------------------------------


def index_bench(root: Path, n: int) -> dict[str, float]:
    backend = FileBackend(root)
    now = time.time()
    entries = {
        f"main:ws:user{i}": SessionEntry(
            key=f"main:ws:user{i}", session_id=f"{i:032x}", created_at=now, updated_at=now,
            turns=i % 50, last_model="anthropic/claude-sonnet-4-5",
            transcript=backend.transcript_path(f"{i:032x}"),
        )
        for i in range(n)
    }  # fmt: skip
    began = time.perf_counter()
    backend.save_index(entries)
    save_s = time.perf_counter() - began
    raw = backend.index_path.read_bytes()
    loads: list[float] = []
    raw_loads: list[float] = []
    for _ in range(3):
        began = time.perf_counter()
        json.loads(raw)
        raw_loads.append(time.perf_counter() - began)
        began = time.perf_counter()
        loaded = backend.load_index()
        loads.append(time.perf_counter() - began)
    keys = [f"main:ws:user{i}" for i in range(0, n, 7)]
    began = time.perf_counter()
    for key in keys:
        loaded.get(key)
    lookup_s = (time.perf_counter() - began) / len(keys)
    return {
        "bytes": len(raw), "save_s": save_s, "load_s": statistics.median(loads),
        "raw_s": statistics.median(raw_loads), "lookup_us": lookup_s * 1e6,
    }  # fmt: skip


# -- appends -------------------------------------------------------------------------------


def raw_fsync_us(root: Path, n: int) -> float:
    path = root / "raw.jsonl"
    line = encode(RECORD)
    times = []
    with open(path, "ab") as f:
        for _ in range(n):
            began = time.perf_counter()
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


def raw_sequential_rate(root: Path, n: int, files: int) -> float:
    line = encode(RECORD)
    began = time.perf_counter()
    for i in range(n):
        with open(root / f"seq{i % files}.jsonl", "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    return n / (time.perf_counter() - began)


async def with_store(root: Path, body: Any) -> Any:
    dead = DeadLetters()
    services = SystemServices(Registry(dead), dead, HookBus(), InflightTracker())
    store_actor: list[StoreActor] = []

    def factory() -> StoreActor:
        store_actor.append(StoreActor(FileBackend(root), SessionsConfig()))
        return store_actor[-1]

    sup = Supervisor("bench", SupervisorPolicy(), [actor_spec("store", factory)], services=services)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        result = await body(services.registry.lookup("store"), store_actor[0])
        sup.request_stop()
    return result


async def group_commit_rate(root: Path, n: int, writers: int, files: int) -> tuple[float, float]:
    async def body(ref: Any, actor: StoreActor) -> tuple[float, float]:
        per_writer = n // writers

        async def writer(w: int) -> None:
            for i in range(per_writer):
                await ref.ask(
                    AppendRecords(session_id=f"g{(w + i) % files}", records=(RECORD,)), 30
                )

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(writers):
                nursery.start_soon(writer, w)
        elapsed = time.perf_counter() - began
        return (per_writer * writers) / elapsed, actor.stats["appends"] / max(
            1, actor.stats["batches"]
        )

    result: tuple[float, float] = await with_store(root, body)
    return result


class MemoryBackend:
    """The store's interface without a disk: the baseline of what persisting costs."""

    location = "memory"

    def __init__(self) -> None:
        self.transcripts: dict[str, list[bytes]] = {}
        self.index: dict[str, SessionEntry] = {}

    def load_index(self) -> dict[str, SessionEntry]:
        return dict(self.index)

    def index_signature(self) -> tuple[int, int] | None:
        return None

    def save_index(self, entries: Any) -> tuple[int, int]:
        self.index = dict(entries)
        return (0, 0)

    def append(self, batch: Any) -> None:
        for session_id, lines in batch:
            self.transcripts.setdefault(session_id, []).extend(lines)

    def read_transcript(self, session_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.transcripts.get(session_id, [])]

    def transcript_path(self, session_id: str) -> str:
        return session_id

    def transcripts_since(self, mtime: float) -> list[str]:
        return []

    def transcript_size(self, session_id: str) -> int:
        return 0

    def archive(self, session_id: str) -> None:
        pass

    def rotate(self, session_id: str, head: Any) -> None:
        pass

    def close(self) -> None:
        pass


async def session_turns(root: Path | None, turns: int, sessions: int) -> list[float]:
    """Turn latencies through SessionManager (echo provider), on files or in memory."""
    import tomllib

    from actors.app import Handles, build_tree
    from actors.config import LoadedConfig, parse_config
    from actors.sessions.manager import SessionManager
    from runtime import ActorSystem

    loaded = LoadedConfig(Path("b.toml"), parse_config(tomllib.loads(""), "b.toml"),
                          root or Path(tempfile.mkdtemp()))  # fmt: skip
    handles = Handles()
    tree, _ = build_tree(
        loaded, handles, env={}, store_backend=MemoryBackend() if root is None else None
    )
    system = ActorSystem()

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        await system.run(tree.spec, handle_signals=False, task_status=task_status)

    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        manager = SessionManager(system.registry, handles.sessions, loaded.config)

        async def one(n: int) -> None:
            key = f"main:bench:{n}"
            await manager.turn(key, "warm up")
            for t in range(turns):
                began = time.perf_counter()
                result = await manager.turn(key, f"turn {t}")
                latencies.append((time.perf_counter() - began) * 1000)
                assert result.state == "final"

        async with trio.open_nursery() as inner:
            for n in range(sessions):
                inner.start_soon(one, n)
        system.request_stop()
    return latencies


# -- memory (each in its own process) ----------------------------------------------------------


def child_memory(kind: str, n: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="cb-bench-mem-"))
    if kind == "passive":
        now = time.time()
        gc.collect()
        before = rss_bytes()
        entries = {
            f"main:ws:user{i}": SessionEntry(
                key=f"main:ws:user{i}", session_id=f"{i:032x}", created_at=now, updated_at=now, turns=3,
                last_model="local/echo", transcript=str(root / f"{i:032x}.jsonl"),
            )
            for i in range(n)
        }  # fmt: skip
        gc.collect()
        return {"per_bytes": (rss_bytes() - before) / len(entries), "rss_mb": rss_bytes() / 2**20}
    return trio.run(_active_sessions, root, n)  # type: ignore[no-any-return]


async def _active_sessions(root: Path, n: int) -> dict[str, float]:
    import tomllib

    from actors.app import Handles, build_tree
    from actors.config import LoadedConfig, parse_config
    from actors.sessions.manager import SessionManager
    from runtime import ActorSystem

    toml = "[sessions]\nqueue_limit = 4\nidle_s = 100000\n[agent.compaction]\nidle_s = 100000\n"
    loaded = LoadedConfig(Path("b.toml"), parse_config(tomllib.loads(toml), "b.toml"), root)
    handles = Handles()
    tree, _ = build_tree(loaded, handles, env={})
    system = ActorSystem()

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        await system.run(tree.spec, handle_signals=False, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        manager = SessionManager(system.registry, handles.sessions, loaded.config)
        await manager.turn("main:ws:warmup", "hello")
        gc.collect()
        before = rss_bytes()
        limiter = trio.CapacityLimiter(64)

        async def one(i: int) -> None:
            async with limiter:
                for t in range(3):
                    await manager.turn(f"main:ws:user{i}", f"turn {t} of a short conversation")

        async with trio.open_nursery() as inner:
            for i in range(n):
                inner.start_soon(one, i)
        gc.collect()
        after = rss_bytes()
        active = manager.active()
        system.request_stop()
    return {"per_bytes": (after - before) / n, "rss_mb": after / 2**20, "active": active}


def in_child(kind: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.child:
        print(json.dumps(child_memory(args.child[0], int(args.child[1]))))
        return
    quick = args.quick
    n_index = 20_000 if quick else 100_000
    root = Path(tempfile.mkdtemp(prefix="cb-bench-"))
    print(f"callboard sessions benchmark (Python {sys.version.split()[0]}, state in {root})\n")

    idx = index_bench(root / "index", n_index)
    print(
        f"index of {n_index:,} sessions ({idx['bytes'] / 2**20:.1f} MB): "
        f"load {idx['load_s'] * 1000:.0f} ms (bare json.loads {idx['raw_s'] * 1000:.0f} ms, "
        f"{idx['load_s'] / idx['raw_s']:.1f}x), lookup {idx['lookup_us']:.2f} µs, "
        f"atomic save {idx['save_s'] * 1000:.0f} ms"
    )

    raw_us = raw_fsync_us(root, 300)
    turns = 60 if quick else 300
    on_disk: list[float] = []
    in_memory: list[float] = []
    for _ in range(3):  # interleaved rounds: drift hits both
        on_disk += trio.run(session_turns, root / "turns", turns // 3, 1)
        in_memory += trio.run(session_turns, None, turns // 3, 1)
    added = pct(on_disk, 0.5) - pct(in_memory, 0.5)
    busy_disk = trio.run(session_turns, root / "busy", 10 if quick else 20, 50)
    busy_mem = trio.run(session_turns, None, 10 if quick else 20, 50)
    print("\npersisting a turn (a session turn with the echo provider, the same store actor on")
    print("files with fsync, or on an in-memory backend):")
    print(f"  one raw append+fsync on this disk       p50 {raw_us / 1000:.3f} ms")
    print(
        f"  one session, in memory                  p50 {pct(in_memory, 0.5):.3f} ms"
        f"   p99 {pct(in_memory, 0.99):.3f} ms"
    )
    print(
        f"  one session, on disk                    p50 {pct(on_disk, 0.5):.3f} ms"
        f"   p99 {pct(on_disk, 0.99):.3f} ms"
    )
    print(f"  persisting adds                         p50 {added:.3f} ms   (target <= 1 ms)")
    print(
        f"  50 sessions at once: in memory p50 {pct(busy_mem, 0.5):.2f} ms, on disk p50 "
        f"{pct(busy_disk, 0.5):.2f} ms (adds {pct(busy_disk, 0.5) - pct(busy_mem, 0.5):.2f} ms)"
    )

    n_appends = 2_000 if quick else 10_000
    sequential = (
        raw_sequential_rate(root / "seq", n_appends // 4, 50)
        if (root / "seq").mkdir() is None
        else 0.0
    )
    grouped, per_batch = trio.run(group_commit_rate, root / "group", n_appends, 200, 50)
    print(
        f"\nappends/s over 50 transcripts: one fsync per append {sequential:,.0f}/s;"
        f" group commit through the store {grouped:,.0f}/s ({grouped / sequential:.1f}x,"
        f" {per_batch:.1f} appends per batch)"
    )

    n_active = 2_000 if quick else 10_000
    passive = in_child("passive", 100_000)
    active = in_child("active", n_active)
    print(
        f"\nmemory: a passivated session (index entry) {passive['per_bytes'] / 1024:.2f} KB;"
        f" an active session {active['per_bytes'] / 1024:.1f} KB"
    )
    print(
        f"  {int(active['active']):,} active sessions (3 turns each): process RSS {active['rss_mb']:.0f} MB"
        f"{'   (target: 10k under 200 MB)' if n_active == 10_000 else ''}"
    )


if __name__ == "__main__":
    main()
