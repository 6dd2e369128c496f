"""`kill -9` in the middle of a burst of appends: every file stays readable, and
every turn that was answered is on disk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from actors.sessions.transcript import history_from, parse_transcript
from tests.process import REPO, STARTUP_TIMEOUT_S, wait_for_line

pytestmark = pytest.mark.process

ANSWERED_BEFORE_KILL = 300


def test_kill_9_during_a_burst_loses_nothing_answered(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[state]\ndir = "state"\n[sessions]\nindex_flush_s = 0.05\n')
    answered: dict[str, int] = defaultdict(int)
    with subprocess.Popen(
        [sys.executable, "-m", "tests.actors.sessions.burst_driver", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            wait_for_line(proc.stdout, "ready")
            seen = 0
            while seen < ANSWERED_BEFORE_KILL:
                line = wait_for_line(proc.stdout, "done ", STARTUP_TIMEOUT_S)[-1]
                _, key, turn = line.split()
                answered[key] = max(answered[key], int(turn))
                seen += 1
            proc.send_signal(signal.SIGKILL)  # mid-burst: appends are in flight
            proc.wait(timeout=STARTUP_TIMEOUT_S)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    sessions = tmp_path / "state" / "sessions"
    index = json.loads((sessions / "index.json").read_text())  # the index is whole JSON
    assert index["version"] == 1
    by_key: dict[str, int] = {}
    for path in sessions.glob("*.jsonl"):
        parsed = parse_transcript(path.read_bytes(), source=str(path))
        assert parsed.corrupt_lines == 0  # at most a torn last line
        history = history_from(parsed.records)
        assert history.key is not None
        by_key[history.key] = history.total_turns
    for key, turn in answered.items():
        assert by_key[key] >= turn, f"{key}: turn {turn} was answered but is not on disk"
    # Every indexed session points at a readable transcript.
    for key, entry in index["sessions"].items():
        assert (sessions / f"{entry['session_id']}.jsonl").exists(), key
