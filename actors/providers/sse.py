"""A small Server-Sent Events parser for streamed model answers.

Follows the WHATWG event-stream rules that matter here: `event:` and `data:`
fields, multi-line data joined with newlines, comments (`:`) ignored, an event
dispatched at a blank line, CRLF / LF / CR line endings.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

__all__ = ["SSEEvent", "iter_sse"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (`message` by default) and its data."""

    event: str
    data: str


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncGenerator[SSEEvent, None]:
    """Events from a byte stream, as they complete.

    A trailing event without its terminating blank line is not dispatched: a
    stream cut in the middle of an event yields nothing for it.
    """
    parser = _Parser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    if parser.buffer.endswith(b"\r"):  # a lone CR at the very end still ends a line
        for event in parser.feed(b"\n"):
            yield event


class _Parser:
    __slots__ = ("buffer", "data", "event")

    def __init__(self) -> None:
        self.buffer = b""
        self.event = ""
        self.data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self.buffer += chunk
        out: list[SSEEvent] = []
        while (cut := _line_end(self.buffer)) is not None:
            end, after = cut
            line = self.buffer[:end].decode("utf-8", errors="replace")
            self.buffer = self.buffer[after:]
            if not line:
                if self.data:
                    out.append(SSEEvent(self.event or "message", "\n".join(self.data)))
                self.event, self.data = "", []
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self.data.append(value)
                elif name == "event":
                    self.event = value
        return out


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first line ends and the next begins, or None if incomplete."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, lf + 1
    if cr + 1 < len(buffer):
        return cr, cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
    return None  # a CR at the very end: wait to see whether an LF follows
