"""The daemon's exceptions, one tree (the runtime's own live in `runtime.errors`).

::

    CallboardError
    └── ConfigError          config.toml is missing, not TOML, or invalid;
                             `problems` lists each as "<file>: <key.path>: <message>"

Messages are built from the offending values, so the line alone says what to fix
and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["CallboardError", "ConfigError"]


class CallboardError(Exception):
    """Base class of every error the daemon raises on purpose."""


class ConfigError(CallboardError):
    """The configuration could not be used.

    Attributes:
        path: the config file.
        problems: one line per problem, each naming the file and the key path.
    """

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))
