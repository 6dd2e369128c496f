"""The session store: the index and the transcripts on disk, owned by one actor.

Layout (under `[state] dir`)::

    sessions/index.json            key -> entry (session_id, updated_at, model, turns, ...)
    sessions/<session_id>.jsonl    the transcript: one JSON record a line
    sessions/archive/              transcripts of pruned sessions, and rotated parts

The disk sits behind `StoreBackend` (index get/put/list, append records, read
a transcript, maintenance) so that a shared backend can replace the files when
several daemons serve one user base; `FileBackend` is the files.

Durability:

* **Appends** are written and flushed record by record, then *group-committed*:
  every append that arrived while the previous batch was being synced shares
  the next fsync of its file. An append is answered once it is on disk.
* **The index** is replaced atomically (temp file, fsync, rename, fsync of the
  directory), at most every `index_flush_s` and at stop. Transcripts are the
  source of truth: at start, transcripts newer than the index are read to
  bring their entries up to date, so a `kill -9` loses at most the record
  being written.
* **The cache**: the index is held in memory and trusted for `cache_ttl_s`;
  then the file's mtime and size are checked and, if another process changed
  it, it is read again (entries changed here and not yet written win).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, cast

import trio
from pydantic import ConfigDict

from actors.clock import WallClock
from actors.config import MaintenanceConfig, SessionsConfig
from actors.durable import fsync_dir, write_atomic
from actors.sessions.path_map import PathMap
from actors.sessions.transcript import RECORD_VERSION, encode, history_from, parse_transcript
from runtime import Actor, Message, Reply

__all__ = [
    "INDEX_FILE",
    "INDEX_VERSION",
    "STORE_NAME",
    "AppendRecords",
    "FileBackend",
    "FlushIndex",
    "GetEntry",
    "ListEntries",
    "MaintenanceReport",
    "PutEntry",
    "ReadTranscript",
    "RunMaintenance",
    "SessionEntry",
    "StoreActor",
    "StoreBackend",
    "apply_maintenance",
    "plan_maintenance",
    "rotate_transcript",
]

log = logging.getLogger("callboard.sessions.store")

STORE_NAME: Final = "store"
INDEX_FILE: Final = "index.json"
INDEX_VERSION: Final = 1
ARCHIVE_DIR: Final = "archive"
_OPEN_TRANSCRIPTS: Final = 256
_SERIAL_FSYNCS: Final = 2
_FSYNC_THREADS: Final = 8
_DAY_S: Final = 86_400.0


_ENTRY_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "session_id": (str,),
    "created_at": (int, float),
    "updated_at": (int, float),
    "turns": (int,),
    "channel": (str, type(None)),
    "transcript": (str,),
    "model_pin": (str, type(None)),
    "last_model": (str, type(None)),
    "last_failover": (str, type(None)),
    "compactions": (int,),
    "previous_ids": (list, tuple),
}


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One session's line in the index.

    A slotted dataclass, not a pydantic model: the index holds one per session
    (100k of them load in a fraction of the time, in a fraction of the memory).

    Attributes:
        key: `<agent>:<channel>:<kind>:<peer>` (or `<agent>:<channel>:<peer>`).
        session_id: names the current transcript.
        transcript: its path, as stored (see `PathMap`); filled in when written.
        model_pin: the model `/model` pinned, if any.
        last_model: the model that served the last turn.
        previous_ids: transcripts of earlier `/new` and `/reset`, kept on disk.
    """

    key: str
    session_id: str
    created_at: float
    updated_at: float
    turns: int = 0
    channel: str | None = None
    transcript: str = ""
    model_pin: str | None = None
    last_model: str | None = None
    last_failover: str | None = None
    compactions: int = 0
    previous_ids: tuple[str, ...] = ()

    @classmethod
    def from_stored(cls, key: str, data: Any) -> SessionEntry:
        """An entry read from the index.

        Raises:
            ValueError: naming the field that is missing or of the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError("not an object")  # noqa: TRY004 - bad data, as for every field
        values: dict[str, Any] = {}
        value: Any
        for name, value in data.items():
            kinds = _ENTRY_FIELDS.get(name)
            if kinds is None:
                continue  # a field from a newer version: ignored, not fatal
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise ValueError(f"{name}: {value!r} is not of the expected type")  # noqa: TRY004
            values[name] = tuple(cast(list[str], value)) if name == "previous_ids" else value
        for required in ("session_id", "created_at", "updated_at"):
            if required not in values:
                raise ValueError(f"{required}: missing")
        return cls(key=key, **values)

    def to_stored(self) -> dict[str, Any]:
        """The index form (the key is the map's key; defaults left out)."""
        out: dict[str, Any] = {
            "session_id": self.session_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        for name in (
            "turns",
            "channel",
            "transcript",
            "model_pin",
            "last_model",
            "last_failover",
            "compactions",
        ):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.previous_ids:
            out["previous_ids"] = list(self.previous_ids)
        return out  # fmt: skip


# -- messages ----------------------------------------------------------------------------


class GetEntry(Message):
    """-> `SessionEntry | None`."""

    key: str


class PutEntry(Message):
    """Create or replace an entry (written with the next index flush)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    entry: SessionEntry


class ListEntries(Message):
    """-> `list[SessionEntry]`, most recently updated first."""


class AppendRecords(Message):
    """Append records to a transcript; answered once they are on disk."""

    session_id: str
    records: tuple[dict[str, Any], ...]


class ReadTranscript(Message):
    """-> the transcript's records (a torn last line skipped)."""

    session_id: str


class FlushIndex(Message):
    """Write the index now; answered once it is on disk."""


class RunMaintenance(Message):
    """Prune, cap and rotate now; -> `MaintenanceReport`. `dry_run` reports only."""

    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What maintenance did (or, in warn mode and dry runs, would do)."""

    acted: bool
    pruned: tuple[str, ...] = ()
    capped: tuple[str, ...] = ()
    rotated: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines."""
        verb = "" if self.acted else "would be "
        out = [f"{len(self.pruned)} session(s) {verb}pruned (idle too long)"]
        out += [f"  {key}" for key in self.pruned]
        out.append(f"{len(self.capped)} session(s) {verb}removed to respect max_entries")
        out += [f"  {key}" for key in self.capped]
        out.append(f"{len(self.rotated)} transcript(s) {verb}rotated")
        out += [f"  {sid}" for sid in self.rotated]
        return out


# -- the backend ----------------------------------------------------------------------------


class StoreBackend(Protocol):
    """What the store needs from its storage. Every method may block (run in a thread)."""

    @property
    def location(self) -> str: ...

    def load_index(self) -> dict[str, SessionEntry]: ...
    def index_signature(self) -> tuple[int, int] | None: ...
    def save_index(self, entries: Mapping[str, SessionEntry]) -> tuple[int, int]: ...
    def append(self, batch: Sequence[tuple[str, Sequence[bytes]]]) -> None: ...
    def read_transcript(self, session_id: str) -> list[dict[str, Any]]: ...
    def transcript_path(self, session_id: str) -> str: ...
    def transcripts_since(self, mtime: float) -> list[str]: ...
    def transcript_size(self, session_id: str) -> int: ...
    def archive(self, session_id: str) -> None: ...
    def rotate(self, session_id: str, head: Sequence[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


class FileBackend:
    """The store on local files (see the module docstring for the layout).

    Args:
        root: the `[state] dir`.
        paths: translates stored transcript paths (host <-> container).
    """

    def __init__(self, root: Path, paths: PathMap | None = None) -> None:
        self.dir = root / "sessions"
        self.index_path = self.dir / INDEX_FILE
        self.paths = paths or PathMap()
        # Open transcripts, least recently used first: opening a file costs more
        # than the write. Only the store's writer uses them, one batch at a time.
        self._open: OrderedDict[str, BinaryIO] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None

    def _file(self, session_id: str) -> Path:
        if not session_id or "/" in session_id or "\\" in session_id or session_id.startswith("."):
            raise ValueError(f"not a session id: {session_id!r}")
        return self.dir / f"{session_id}.jsonl"

    @property
    def location(self) -> str:
        """Where the sessions live."""
        return str(self.dir)

    def transcript_path(self, session_id: str) -> str:
        return self.paths.to_stored(str(self._file(session_id)))

    # index ---------------------------------------------------------------------------

    def index_signature(self) -> tuple[int, int] | None:
        try:
            stat = self.index_path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def load_index(self) -> dict[str, SessionEntry]:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return {}
        data = json.loads(raw)
        entries = data.get("sessions", {}) if isinstance(data, dict) else {}
        out: dict[str, SessionEntry] = {}
        for key, value in entries.items():
            try:
                entry = SessionEntry.from_stored(key, value)
            except ValueError as exc:
                log.warning("%s: entry %r is invalid and skipped: %s", self.index_path, key, exc)
                continue
            out[key] = entry
        return out

    def save_index(self, entries: Mapping[str, SessionEntry]) -> tuple[int, int]:
        self.dir.mkdir(parents=True, exist_ok=True)
        body = {
            "version": INDEX_VERSION,
            "sessions": {
                key: entry.to_stored()
                | {"transcript": entry.transcript or self.transcript_path(entry.session_id)}
                for key, entry in entries.items()
            },
        }  # fmt: skip
        write_atomic(self.index_path, json.dumps(body, separators=(",", ":")).encode())
        stat = self.index_path.stat()
        return stat.st_mtime_ns, stat.st_size

    # transcripts -----------------------------------------------------------------------

    def _repair_tail(self, path: Path) -> None:
        """Cut a torn last line left by a crash, so new records do not glue onto it."""
        try:
            with open(path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                keep = 0
                step = 4096
                position = size
                while position > 0 and not keep:
                    position = max(0, position - step)
                    f.seek(position)
                    chunk = f.read(min(step, size - position))
                    cut = chunk.rfind(b"\n")
                    if cut != -1:
                        keep = position + cut + 1
                f.truncate(keep)
                log.warning("%s: cut a torn last line (%d bytes)", path, size - keep)
        except FileNotFoundError:
            return

    def append(self, batch: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        """Write each record and flush it; then one fsync per file for the whole batch."""
        self.dir.mkdir(parents=True, exist_ok=True)
        by_file: dict[str, list[bytes]] = {}
        for session_id, lines in batch:
            by_file.setdefault(session_id, []).extend(lines)
        touched = []
        for session_id, lines in by_file.items():
            f = self._handle(session_id)
            for line in lines:
                f.write(line)
                f.flush()  # per record: a kill -9 loses at most the one being written
            touched.append(f)
        if len(touched) <= _SERIAL_FSYNCS:
            for f in touched:
                os.fsync(f.fileno())
        else:
            # Several files: their fsyncs in parallel join the same journal commits.
            list(self._fsync_pool().map(lambda f: os.fsync(f.fileno()), touched))

    def _fsync_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_FSYNC_THREADS, thread_name_prefix="fsync")
        return self._pool

    def _handle(self, session_id: str) -> BinaryIO:
        f = self._open.get(session_id)
        if f is not None:
            self._open.move_to_end(session_id)
            return f
        path = self._file(session_id)
        self._repair_tail(path)  # first write to it in this run
        f = open(path, "ab")  # noqa: SIM115 - kept open across batches, closed in _close
        self._open[session_id] = f
        if len(self._open) > _OPEN_TRANSCRIPTS:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        return f

    def _close(self, session_id: str) -> None:
        f = self._open.pop(session_id, None)
        if f is not None:
            f.close()

    def close(self) -> None:
        """Close every open transcript (and the fsync threads)."""
        while self._open:
            _, f = self._open.popitem()
            f.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def read_transcript(self, session_id: str) -> list[dict[str, Any]]:
        path = self._file(session_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        return parse_transcript(data, source=str(path)).records

    def transcripts_since(self, mtime: float) -> list[str]:
        if not self.dir.exists():
            return []
        out = []
        with os.scandir(self.dir) as entries:
            for item in entries:
                if (
                    item.name.endswith(".jsonl")
                    and item.is_file()
                    and item.stat().st_mtime >= mtime
                ):
                    out.append(item.name.removesuffix(".jsonl"))
        return out

    def transcript_size(self, session_id: str) -> int:
        try:
            return self._file(session_id).stat().st_size
        except FileNotFoundError:
            return 0

    def archive(self, session_id: str) -> None:
        self._close(session_id)
        archive = self.dir / ARCHIVE_DIR
        archive.mkdir(parents=True, exist_ok=True)
        path = self._file(session_id)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, archive / path.name)

    def rotate(self, session_id: str, head: Sequence[dict[str, Any]]) -> None:
        """Move the transcript to the archive as a numbered part; start anew with `head`."""
        self._close(session_id)
        archive = self.dir / ARCHIVE_DIR
        archive.mkdir(parents=True, exist_ok=True)
        path = self._file(session_id)
        part = 1
        while (archive / f"{session_id}.{part}.jsonl").exists():
            part += 1
        fresh = path.with_name(f".{path.name}.rotating")
        with open(fresh, "wb") as f:
            for record in head:
                f.write(encode(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(path, archive / f"{session_id}.{part}.jsonl")
        os.replace(fresh, path)
        fsync_dir(self.dir)


# -- the actor --------------------------------------------------------------------------------


@dataclass
class _Pending:
    session_id: str
    lines: list[bytes]
    reply: Reply | None


@dataclass
class _IndexCache:
    entries: dict[str, SessionEntry] = field(default_factory=dict)
    signature: tuple[int, int] | None = None
    checked_at: float = float("-inf")
    dirty: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)


class StoreActor(Actor[Message]):
    """Owns the disk: the index cache, group-committed appends, maintenance.

    Args:
        backend: the storage.
        config: `[sessions]` (flush interval, cache TTL, maintenance).
    """

    background = True
    reply_errors = (OSError, ValueError)  # a bad file or id is the asker's error, not a crash

    def __init__(self, backend: StoreBackend, config: SessionsConfig) -> None:
        self.backend = backend
        self.config = config
        self.cache = _IndexCache()
        self._pending: list[_Pending] = []
        self._writer_wake = trio.Event()
        self._flush_due = trio.Event()
        self._disk = trio.Lock()  # appends and rotations never touch a file at once
        self.stats = {"appends": 0, "batches": 0, "index_writes": 0}

    async def on_start(self) -> None:
        self.clock = WallClock()
        self.on_stop_budget_s = max(self.on_stop_budget_s, self.config.turn_timeout_s)
        await self._load()
        self.nursery.start_soon(self._writer)
        self.nursery.start_soon(self._flusher)
        self.nursery.start_soon(self._maintenance_timer)

    async def _load(self) -> None:
        cache = self.cache
        cache.signature = await trio.to_thread.run_sync(self.backend.index_signature)
        cache.entries = await trio.to_thread.run_sync(self.backend.load_index)
        cache.checked_at = trio.current_time()
        since = (cache.signature[0] / 1e9) if cache.signature else 0.0
        recovered = await trio.to_thread.run_sync(self._recover, since)
        if recovered:
            log.info("brought %d index entr(ies) up to date from their transcripts", len(recovered))
            self._mark_dirty(recovered)

    def _recover(self, since: float) -> list[str]:
        """Keys whose transcripts changed after the index was written (a crash), updated."""
        recovered: list[str] = []
        by_id = {e.session_id: e for e in self.cache.entries.values()}
        for session_id in self.backend.transcripts_since(since):
            try:
                records = self.backend.read_transcript(session_id)
            except (OSError, ValueError) as exc:
                log.warning("transcript %s is unreadable, left alone: %s", session_id, exc)
                continue
            if not records or records[0].get("type") != "session":
                continue
            header = records[0]
            key = header.get("key")
            if not isinstance(key, str):
                continue
            history = history_from(records)
            updated = history.updated_at or float(header.get("created_at") or 0.0)
            current = self.cache.entries.get(key)
            known = by_id.get(session_id)
            if known is not None:
                entry = replace(
                    known,
                    turns=max(known.turns, history.total_turns),
                    updated_at=max(known.updated_at, updated),
                    last_model=history.last_model or known.last_model,
                    compactions=max(known.compactions, history.compactions),
                )
            elif current is None or float(header.get("created_at") or 0) > current.created_at:
                previous = () if current is None else (*current.previous_ids, current.session_id)
                entry = SessionEntry(
                    key=key,
                    session_id=session_id,
                    created_at=float(header.get("created_at") or updated),
                    updated_at=updated,
                    turns=history.total_turns,
                    channel=header.get("channel")
                    if isinstance(header.get("channel"), str)
                    else None,
                    transcript=self.backend.transcript_path(session_id),
                    last_model=history.last_model,
                    compactions=history.compactions,
                    previous_ids=previous,
                )
            else:
                continue
            if entry != self.cache.entries.get(key):
                self.cache.entries[key] = entry
                recovered.append(key)
        return recovered

    # -- the cache ---------------------------------------------------------------------

    async def _fresh(self, *, force: bool = False) -> dict[str, SessionEntry]:
        """The index, revalidated against the file when the TTL has passed (or `force`)."""
        cache = self.cache
        now = trio.current_time()
        if not force and now - cache.checked_at < self.config.cache_ttl_s:
            return cache.entries
        signature = await trio.to_thread.run_sync(self.backend.index_signature)
        cache.checked_at = trio.current_time()
        if signature != cache.signature and signature is not None:
            log.info("the index changed on disk; reloading it")
            outside = await trio.to_thread.run_sync(self.backend.load_index)
            for key in cache.dirty:
                if key in cache.entries:
                    outside[key] = cache.entries[key]
            for key in cache.removed:
                outside.pop(key, None)
            cache.entries = outside
            cache.signature = signature
        return cache.entries

    def _mark_dirty(self, keys: Iterable[str]) -> None:
        self.cache.dirty.update(keys)
        self._flush_due.set()

    # -- messages ----------------------------------------------------------------------

    async def receive(self, message: Message) -> object:
        if isinstance(message, AppendRecords):
            lines = [encode(record) for record in message.records]
            self._pending.append(_Pending(message.session_id, lines, self.defer_reply()))
            self._writer_wake.set()
            return None
        if isinstance(message, GetEntry):
            return (await self._fresh()).get(message.key)
        if isinstance(message, PutEntry):
            entry = message.entry  # the sender's own object: no copy per session
            (await self._fresh())[entry.key] = entry
            self.cache.removed.discard(entry.key)
            self._mark_dirty([entry.key])
            return None
        if isinstance(message, ListEntries):
            entries = list((await self._fresh()).values())
            return sorted(entries, key=lambda e: e.updated_at, reverse=True)
        if isinstance(message, ReadTranscript):
            return await trio.to_thread.run_sync(self.backend.read_transcript, message.session_id)
        if isinstance(message, FlushIndex):
            await self._flush()
            return None
        if isinstance(message, RunMaintenance):
            return await self.maintain(dry_run=message.dry_run)
        raise TypeError(f"store: unexpected message {type(message).__name__}")

    # -- writing -------------------------------------------------------------------------

    async def _writer(self) -> None:
        """Group commit: take every pending append, write them, one fsync per file."""
        while True:
            await self._writer_wake.wait()
            self._writer_wake = trio.Event()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                async with self._disk:
                    await trio.to_thread.run_sync(
                        self.backend.append, [(p.session_id, p.lines) for p in batch]
                    )
            except OSError as exc:
                log.exception("appending to %d transcript(s) failed", len(batch))
                for pending in batch:
                    if pending.reply is not None:
                        pending.reply.set_error(exc)
                continue
            self.stats["batches"] += 1
            self.stats["appends"] += len(batch)
            for pending in batch:
                if pending.reply is not None:
                    pending.reply.set_value(None)

    async def _flusher(self) -> None:
        while True:
            await self._flush_due.wait()
            await trio.sleep(self.config.index_flush_s)
            await self._flush()

    async def _flush(self) -> None:
        self._flush_due = trio.Event()
        cache = self.cache
        if not cache.dirty and not cache.removed:
            return
        # Revalidate first, so an edit by another process is merged, not overwritten.
        entries = dict(await self._fresh(force=True))
        dirty, removed = set(cache.dirty), set(cache.removed)
        cache.dirty.clear()
        cache.removed.clear()
        try:
            cache.signature = await trio.to_thread.run_sync(self.backend.save_index, entries)
        except OSError:
            log.exception("writing the index failed (kept in memory, retried)")
            cache.dirty |= dirty
            cache.removed |= removed
            self._flush_due.set()
            return
        self.stats["index_writes"] += 1

    async def on_stop(self) -> None:
        # Appends still queued are written, and the index is flushed: nothing
        # accepted is lost at a graceful stop.
        batch, self._pending = self._pending, []
        if batch:
            try:
                await trio.to_thread.run_sync(
                    self.backend.append, [(p.session_id, p.lines) for p in batch]
                )
                outcome: Exception | None = None
            except OSError as exc:
                outcome = exc
            for pending in batch:
                if pending.reply is not None:
                    if outcome is None:
                        pending.reply.set_value(None)
                    else:
                        pending.reply.set_error(outcome)
        await self._flush()
        self.backend.close()

    # -- maintenance -----------------------------------------------------------------------

    async def _maintenance_timer(self) -> None:
        interval = self.config.maintenance.interval_s
        while True:
            await trio.sleep(interval)
            report = await self.maintain(dry_run=False)
            for line in report.lines():
                log.info("maintenance: %s", line)

    async def maintain(self, *, dry_run: bool) -> MaintenanceReport:
        """Prune, cap and rotate (or only report, in warn mode or a dry run)."""
        config = self.config.maintenance
        act = not dry_run and config.mode == "enforce"
        entries = await self._fresh()
        report = await trio.to_thread.run_sync(
            plan_maintenance, self.backend, dict(entries), config, self.clock.now(), act
        )
        if act:
            async with self._disk:
                await trio.to_thread.run_sync(
                    apply_maintenance, self.backend, dict(entries), report
                )
            for key in (*report.pruned, *report.capped):
                entries.pop(key, None)
                self.cache.removed.add(key)
                self.cache.dirty.discard(key)
            if report.pruned or report.capped:
                self._flush_due.set()
        elif report.pruned or report.capped or report.rotated:
            log.warning(
                "maintenance (%s): %d to prune, %d over max_entries, %d to rotate",
                "dry run" if dry_run else "warn mode",
                len(report.pruned),
                len(report.capped),
                len(report.rotated),
            )
        return report


def plan_maintenance(
    backend: StoreBackend,
    entries: Mapping[str, SessionEntry],
    config: MaintenanceConfig,
    now: float,
    act: bool,
) -> MaintenanceReport:
    """What maintenance would do now: idle sessions to prune, the oldest beyond
    `max_entries`, transcripts over `rotate_bytes`."""
    horizon = now - config.prune_after_days * _DAY_S
    pruned = [k for k, e in entries.items() if e.updated_at < horizon]
    gone = set(pruned)
    remaining = sorted(
        (e for e in entries.values() if e.key not in gone), key=lambda e: e.updated_at
    )
    excess = len(remaining) - config.max_entries
    capped = [e.key for e in remaining[:excess]] if excess > 0 else []
    gone |= set(capped)
    rotated = [
        e.session_id
        for e in entries.values()
        if e.key not in gone and backend.transcript_size(e.session_id) > config.rotate_bytes
    ]
    return MaintenanceReport(act, tuple(pruned), tuple(capped), tuple(rotated))


def apply_maintenance(
    backend: StoreBackend, entries: Mapping[str, SessionEntry], report: MaintenanceReport
) -> None:
    """Archive the transcripts of pruned and capped sessions; rotate the big ones."""
    for key in (*report.pruned, *report.capped):
        entry = entries[key]
        for session_id in (entry.session_id, *entry.previous_ids):
            backend.archive(session_id)
    for session_id in report.rotated:
        rotate_transcript(backend, session_id)


def rotate_transcript(backend: StoreBackend, session_id: str) -> None:
    """Archive a transcript as a numbered part; the new file starts with its header
    and a `carry` record: the latest summary and the turns after it."""
    records = backend.read_transcript(session_id)
    header = records[0] if records and records[0].get("type") == "session" else {}
    history = history_from(records)
    carry = {
        "type": "carry",
        "v": RECORD_VERSION,
        "ts": time.time(),
        "summary": history.summary,
        "through_turn": history.through_turn,
        "total_turns": history.total_turns,
        "turns": [
            {"number": t.number, "user": t.user, "assistant": t.assistant}
            for t in history.since_summary()
        ],
    }
    backend.rotate(session_id, [header, carry] if header else [carry])
