"""The command-line clients: `callboard chat`, `callboard send`, `callboard status`.

They talk to a running daemon over its WebSocket gateway, like any client.
The token comes from the variable named by `[gateway] token_env`.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final, TextIO

import trio

from actors.channels.client import GatewayClient
from actors.config import LoadedConfig
from actors.errors import GatewayError

__all__ = ["chat_command", "gateway_url", "send_command", "status_command"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UNREACHABLE: Final = 3
DEFAULT_SESSION: Final = "cli"


def gateway_url(loaded: LoadedConfig, url: str | None) -> str:
    """`--url`, else the gateway this config would start."""
    if url:
        return url
    gateway = loaded.config.gateway
    host = "127.0.0.1" if gateway.bind in ("0.0.0.0", "::") else gateway.bind  # noqa: S104
    return f"ws://{host}:{gateway.ws_port}"


def _token(loaded: LoadedConfig) -> str | None:
    return os.environ.get(loaded.config.gateway.token_env) or None


def _print_error(payload: dict[str, Any], err: TextIO) -> None:
    error = payload.get("error") or {}
    print(f"error: {error.get('code')}: {error.get('message')}", file=err)


async def _turn(client: GatewayClient, session: str, text: str, out: TextIO, err: TextIO) -> bool:
    streamed = ""

    async def on_delta(piece: str) -> None:
        nonlocal streamed
        streamed += piece
        out.write(piece)
        out.flush()

    payload = await client.chat(session, text, on_delta=on_delta)
    final = payload.get("text") or ""
    if payload["state"] == "final":
        # The final text is the whole reply: chat commands arrive only there,
        # and a plugin may have added to what streamed, or rewritten it.
        if final.startswith(streamed):
            out.write(final[len(streamed) :])
        else:
            out.write(f"\n[rewritten] {final}")
    out.write("\n")
    out.flush()
    if payload["state"] == "error":
        _print_error(payload, err)
        return False
    if payload["state"] == "aborted":
        print("(aborted)", file=err)
        return False
    return True


async def send_command(
    loaded: LoadedConfig,
    url: str | None,
    session: str,
    text: str,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """One turn; 0 when it was answered."""
    try:
        async with GatewayClient.connect(gateway_url(loaded, url), token=_token(loaded)) as client:
            return EXIT_OK if await _turn(client, session, text, out, err) else EXIT_FAILED
    except GatewayError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE if exc.code == "unreachable" else EXIT_FAILED


async def chat_command(
    loaded: LoadedConfig,
    url: str | None,
    session: str,
    *,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """An interactive chat: one line, one turn; EOF ends it."""
    address = gateway_url(loaded, url)
    lines = trio.wrap_file(stdin)
    try:
        async with GatewayClient.connect(address, token=_token(loaded)) as client:
            if stdin.isatty():
                print(f"connected to {address}, session {session!r}; /help for commands", file=err)
            while True:
                if stdin.isatty():
                    out.write("> ")
                    out.flush()
                line = await lines.readline()
                if not line:
                    return EXIT_OK
                text = line.rstrip("\n")
                if text.strip():
                    await _turn(client, session, text, out, err)
    except GatewayError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE if exc.code == "unreachable" else EXIT_FAILED


def _render(node: dict[str, Any], indent: str = "") -> list[str]:
    depth = "" if node.get("mailbox_depth") is None else f" mailbox={node['mailbox_depth']}"
    head = f"{indent}{node['name']} [{node['kind']}] {node['state']}"
    lines = [f"{head} restarts={node['restarts']}{depth}"]
    for child in node.get("children", []):
        lines.extend(_render(child, indent + "  "))
    return lines


async def status_command(
    loaded: LoadedConfig, url: str | None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Print the daemon's live actor tree."""
    try:
        async with GatewayClient.connect(gateway_url(loaded, url), token=_token(loaded)) as client:
            status = await client.request("status")
    except GatewayError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE if exc.code == "unreachable" else EXIT_FAILED
    if status.get("tree"):
        out.write("\n".join(_render(status["tree"])) + "\n")
    in_flight = status.get("in_flight") or {}
    out.write(
        f"connections: {status.get('connections', 0)}; in flight: "
        f"{sum(in_flight.values())} {in_flight if in_flight else ''}".rstrip()
        + ("; draining" if status.get("draining") else "")
        + "\n"
    )
    return EXIT_OK
