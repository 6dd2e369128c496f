"""The SSE parser."""

from __future__ import annotations

from collections.abc import AsyncIterator

from actors.providers.sse import SSEEvent, iter_sse


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def parse(*parts: bytes) -> list[SSEEvent]:
    return [event async for event in iter_sse(chunks(*parts))]


async def test_events_split_across_chunks_and_line_endings() -> None:
    events = await parse(
        b'data: {"a"', b": 1}\n\nevent: ping\r\ndata: x\r\n\r", b"\ndata: y\rdata: z\r\r"
    )
    assert events == [
        SSEEvent("message", '{"a": 1}'),
        SSEEvent("ping", "x"),
        SSEEvent("message", "y\nz"),
    ]


async def test_comments_and_unknown_fields_are_ignored() -> None:
    events = await parse(b": keep-alive\n\nid: 7\nretry: 10\ndata:no-space\n\n")
    assert events == [SSEEvent("message", "no-space")]


async def test_an_unterminated_last_event_is_not_dispatched() -> None:
    assert await parse(b"data: complete\n\ndata: cut in the mid") == [
        SSEEvent("message", "complete")
    ]


async def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert await parse(b"\n\n\nevent: x\n\n") == []
