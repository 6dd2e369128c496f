"""write_atomic: the old file or the new one, never half, and no temp file left."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.durable import write_atomic


def test_a_file_is_created_then_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "state.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"kept")
    (tmp_path / ".state.json.tmp").mkdir()  # the temp file cannot be opened
    with pytest.raises(IsADirectoryError):
        write_atomic(target, b"lost")
    assert target.read_bytes() == b"kept"
