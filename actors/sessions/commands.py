"""Chat commands, the same on every channel.

/new, /reset            start a new session (the old transcript is kept)
/model <provider/model> pin a model for this session; /model default unpins
/model                  show the model in use
/status                 model, turns, token estimate, last failover
/compact                summarize older turns now
/help                   this list
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["COMMANDS", "HELP", "Command", "parse_command"]

COMMANDS: Final[dict[str, str]] = {
    "new": "start a new session (the old transcript is kept)",
    "reset": "the same as /new",
    "model": "/model <provider/model> pins a model; /model default unpins; /model shows it",
    "status": "model, turns, token estimate, last failover",
    "compact": "summarize older turns now",
    "help": "this list",
}

HELP: Final = "Commands:\n" + "\n".join(f"/{name} — {text}" for name, text in COMMANDS.items())


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: its name (lower case) and the rest of the line."""

    name: str
    argument: str

    @property
    def known(self) -> bool:
        return self.name in COMMANDS


def parse_command(text: str) -> Command | None:
    """A command when `text` starts with `/` followed by a word, else None."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2 or not stripped[1].isalpha():
        return None
    head, _, rest = stripped[1:].partition(" ")
    return Command(head.split("@", 1)[0].lower(), rest.strip())  # /cmd@botname (Telegram)
