"""Running real `callboard` processes from tests."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

STARTUP_TIMEOUT_S: Final = 30.0
"""A guard against a hung child, not a timing assertion."""

REPO: Final = Path(__file__).resolve().parents[1]


def callboard_argv(*args: str) -> list[str]:
    """The argv that runs the CLI with this interpreter (the installed package)."""
    return [sys.executable, "-m", "actors.cli", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `callboard ARGS` to completion."""
    return subprocess.run(
        callboard_argv(*args),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def start_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """Start `callboard ARGS` in the background, stderr piped for `wait_for_line`."""
    return subprocess.Popen(
        callboard_argv(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


_PENDING: weakref.WeakKeyDictionary[IO[str], bytes] = weakref.WeakKeyDictionary()
_READ_BYTES = 65536


def wait_for_line(stream: IO[str], needle: str, timeout_s: float = STARTUP_TIMEOUT_S) -> list[str]:
    """Read lines until one contains `needle`; returns the lines read. Fails after `timeout_s`.

    Reads the file descriptor itself (keeping its own buffer), so a line that
    already arrived is never missed while waiting for the next.
    """
    fd = stream.fileno()
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            pending = _PENDING.get(stream, b"")
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                _PENDING[stream] = pending
                line = raw.decode(errors="replace") + "\n"
                lines.append(line)
                if needle in line:
                    return lines
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line containing {needle!r} within {timeout_s} s: {lines}")
            if not selector.select(left):
                continue
            chunk = os.read(fd, _READ_BYTES)
            if not chunk:
                raise AssertionError(f"stream ended before {needle!r}: {lines}")
            _PENDING[stream] = pending + chunk


def write_config(directory: Path, extra: str = "", *, grace_s: float = 5) -> Path:
    """A small valid config in `directory` whose state lives beside it."""
    path = directory / "config.toml"
    path.write_text(
        f"""
[gateway]
shutdown_grace_s = {grace_s}
[state]
dir = "state"
[providers.local]
kind = "echo"
[models]
primary = "local/echo"
{extra}
"""
    )
    return path


def finish(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int, str]:
    """Wait for `proc` (killing it after `timeout_s`); returns its code and remaining stderr."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise
    return proc.returncode, err


def argv_of(cmd: Sequence[str]) -> str:
    return " ".join(cmd)
