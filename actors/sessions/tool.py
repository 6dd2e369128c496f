"""`callboard sessions list|show|prune`: the store, read and maintained from the shell.

These commands work on the files directly, with or without a running daemon
(a running daemon notices an edited index by its mtime and size).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any, Final

from actors.config import LoadedConfig
from actors.sessions.path_map import PathMap
from actors.sessions.store import FileBackend, SessionEntry, apply_maintenance, plan_maintenance

__all__ = ["sessions_command"]

EXIT_NOT_FOUND: Final = 1
_PREVIEW_CHARS: Final = 200


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _list(entries: dict[str, SessionEntry]) -> None:
    rows = sorted(entries.values(), key=lambda e: e.updated_at, reverse=True)
    if not rows:
        print("no sessions")
        return
    width = max(len("KEY"), *(len(e.key) for e in rows))
    print(f"{'KEY':<{width}}  {'TURNS':>5}  {'UPDATED':<16}  {'MODEL':<30}  SESSION")
    for e in rows:
        model = e.model_pin or e.last_model or "-"
        updated = _when(e.updated_at)
        print(f"{e.key:<{width}}  {e.turns:>5}  {updated:<16}  {model:<30}  {e.session_id[:12]}")


def _show(backend: FileBackend, entry: SessionEntry) -> None:
    print(f"key:          {entry.key}")
    print(f"session id:   {entry.session_id}")
    print(f"transcript:   {backend.paths.to_local(entry.transcript) if entry.transcript else '-'}")
    print(f"created:      {_when(entry.created_at)}")
    print(f"updated:      {_when(entry.updated_at)}")
    print(f"turns:        {entry.turns}")
    print(f"model pin:    {entry.model_pin or '-'}")
    print(f"last model:   {entry.last_model or '-'}")
    print(f"last failover:{' ' + entry.last_failover if entry.last_failover else ' none'}")
    print(f"compactions:  {entry.compactions}")
    if entry.previous_ids:
        print(f"earlier:      {', '.join(entry.previous_ids)}")
    print()
    for record in backend.read_transcript(entry.session_id):
        print(_line(record))


def _line(record: dict[str, Any]) -> str:
    kind = record.get("type")
    turn = record.get("turn", "")
    if kind == "message":
        text = str(record.get("content", ""))
        if len(text) > _PREVIEW_CHARS:
            text = text[:_PREVIEW_CHARS] + "…"
        model = f" ({record['model']})" if record.get("model") else ""
        return f"[{turn}] {record.get('role')}{model}: {text}"
    if kind == "compaction":
        return f"[summary through turn {record.get('through_turn')}] {record.get('summary', '')}"
    if kind == "error":
        return f"[{turn}] error {record.get('code')}: {record.get('message')}"
    if kind == "aborted":
        return f"[{turn}] aborted after: {record.get('partial', '')!r}"
    return f"[{kind}]"


def sessions_command(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """Run `callboard sessions VERB`; returns the exit code."""
    config = loaded.config.sessions
    backend = FileBackend(loaded.state_dir, PathMap(config.path_map))
    entries = backend.load_index()
    verb = args.sessions_command
    if verb == "list":
        _list(entries)
        return 0
    if verb == "show":
        entry = entries.get(args.key)
        if entry is None:
            print(f"no session {args.key!r} in {backend.index_path}", file=sys.stderr)
            return EXIT_NOT_FOUND
        _show(backend, entry)
        return 0
    act = not args.dry_run and config.maintenance.mode == "enforce"
    report = plan_maintenance(backend, entries, config.maintenance, time.time(), act)
    if act:
        apply_maintenance(backend, entries, report)
        for key in (*report.pruned, *report.capped):
            entries.pop(key, None)
        backend.save_index(entries)
    if not act and not args.dry_run:
        print("mode = warn: reporting only")
    for line in report.lines():
        print(line)
    return 0
