"""Translating stored paths between the host and a container, both ways.

The index stores each transcript's path. When the same state directory is
seen by two processes under different prefixes (a daemon in a container at
`/data`, the CLI on the host at `/home/me/.callboard`), `[sessions.path_map]`
says which local prefix corresponds to which stored prefix:

    [sessions.path_map]
    "/home/me/.callboard" = "/data"

`to_stored` rewrites a local path before it is written; `to_local` rewrites a
stored path after it is read. The longest matching prefix wins, a prefix only
matches whole path components (`/data` does not match `/database`), trailing
separators do not matter, and Windows paths (`C:\\Users\\me`, either slash,
any drive-letter case) match case-insensitively and come back with the
separator of the side they are translated to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PathMap"]


def _is_windows(path: str) -> bool:
    return (len(path) >= 2 and path[1] == ":" and path[0].isalpha()) or path.startswith("\\\\")


def _normalise(path: str) -> str:
    """A comparable form: forward slashes, no trailing slash, lower case on Windows."""
    windows = _is_windows(path)
    out = path.replace("\\", "/") if windows else path
    if len(out) > 1:
        out = out.rstrip("/") or "/"
    return out.lower() if windows else out


@dataclass(frozen=True, slots=True)
class _Rule:
    source: str  # normalised prefix matched
    target: str  # prefix substituted (as written)
    target_windows: bool


class PathMap:
    """Maps path prefixes between this process (local) and the index (stored).

    Args:
        mapping: local prefix -> stored prefix.
    """

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        pairs = list((mapping or {}).items())
        self._to_stored = self._rules((local, stored) for local, stored in pairs)
        self._to_local = self._rules((stored, local) for local, stored in pairs)

    @staticmethod
    def _rules(pairs: object) -> list[_Rule]:
        rules = []
        for src, dst in pairs:  # type: ignore[attr-defined]
            windows = _is_windows(dst)
            target = dst.replace("/", "\\") if windows else dst
            rules.append(_Rule(_normalise(src), target.rstrip("/\\") or target[:1], windows))
        return sorted(rules, key=lambda r: len(r.source), reverse=True)

    def to_stored(self, path: str) -> str:
        """The form of a local path that goes into the index."""
        return self._apply(self._to_stored, path)

    def to_local(self, path: str) -> str:
        """The local form of a path read from the index."""
        return self._apply(self._to_local, path)

    @staticmethod
    def _apply(rules: list[_Rule], path: str) -> str:
        if not rules:
            return path
        norm = _normalise(path)
        for rule in rules:
            src = rule.source
            if norm == src or norm.startswith(src.rstrip("/") + "/"):
                rest = path.replace("\\", "/")[len(src.rstrip("/")) :].lstrip("/")
                if not rest:
                    return rule.target
                sep = "\\" if rule.target_windows else "/"
                rest = rest.replace("/", sep)
                return rule.target.rstrip("/\\") + sep + rest
        return path
