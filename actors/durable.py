"""Writing small state files so that a crash leaves the old or the new one, never half.

The index, the cooldowns (`auth-state.json`) and the Telegram offset are all
replaced the same way: write a temp file beside the target, fsync it, rename it
over the target, fsync the directory (so the rename itself is on disk).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "set_aside", "write_atomic"]


def fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(path: Path) -> Path:
    """Rename an unreadable `path` to `<name>.corrupt` (kept for a look); returns the new path."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    return aside


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, durably and all at once (its directory is created).

    Raises:
        OSError: the file could not be written; `path` is then unchanged.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
