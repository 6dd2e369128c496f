"""A real `callboard run` process: the command-line clients, and a graceful drain
on SIGTERM with streaming runs in flight, checked against the transcripts."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.channels.client import GatewayClient
from actors.errors import GatewayError
from tests.process import REPO, callboard_argv, finish, run_cli, start_cli, wait_for_line

pytestmark = pytest.mark.process

RUNS = 8
GRACE_S = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def daemon_config(directory: Path, *, word_delay_s: float) -> Path:
    path = directory / "config.toml"
    path.write_text(
        f"""
[gateway]
ws_port = {free_port()}
http_port = {free_port()}
shutdown_grace_s = {GRACE_S}
[state]
dir = "state"
[providers.local]
kind = "echo"
word_delay_s = {word_delay_s}
[models]
primary = "local/echo"
"""
    )
    return path


def start_daemon(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = start_cli("run", "-c", str(config), cwd=REPO)
    assert proc.stderr is not None
    line = wait_for_line(proc.stderr, "websocket listening on")[-1]
    return proc, line.rsplit(" ", 1)[-1].strip()


def transcripts(state: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in (state / "sessions").glob("*.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        out[records[0]["key"]] = records
    return out


async def test_sigterm_lets_runs_finish_or_end_them_with_shutdown(tmp_path: Path) -> None:
    config = daemon_config(tmp_path, word_delay_s=0.25)
    proc, url = await trio.to_thread.run_sync(start_daemon, config)
    results: dict[str, dict[str, Any]] = {}
    streaming = trio.Event()
    started = 0
    try:
        async with trio.open_nursery() as nursery:

            async def run(n: int, words: int) -> None:
                nonlocal started
                first = True

                async def on_delta(_: str) -> None:
                    nonlocal started, first
                    if first:
                        first, started = False, started + 1
                        if started == RUNS:
                            streaming.set()

                async with GatewayClient.connect(url) as client:
                    results[f"s{n}"] = await client.chat(
                        f"s{n}", " ".join(["word"] * words), on_delta=on_delta
                    )

            for n in range(RUNS):
                # Half finish within the grace period, half are still going at its end.
                nursery.start_soon(run, n, 3 if n % 2 else 60)
            with trio.fail_after(30):
                await streaming.wait()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(GatewayError) as refused:
                async with GatewayClient.connect(url) as late:
                    await late.chat("late", "too late")
            assert refused.value.code in ("shutting_down", "unreachable")
        code, err = await trio.to_thread.run_sync(lambda: finish(proc, GRACE_S + 20))
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, err
    assert len(results) == RUNS
    states = {key: (r["state"], (r.get("error") or {}).get("code")) for key, r in results.items()}
    for n in range(RUNS):
        assert states[f"s{n}"] == (("final", None) if n % 2 else ("error", "shutdown")), states
    # Nothing is missing from the transcripts: each message, then its answer or its cut.
    written = transcripts(tmp_path / "state")
    for n in range(RUNS):
        records = written[f"main:ws:s{n}"]
        kinds = [(r["type"], r.get("role")) for r in records[1:]]
        if n % 2:
            assert kinds == [("message", "user"), ("message", "assistant")]
        else:
            assert kinds == [("message", "user"), ("aborted", None)]
            assert records[-1]["partial"] == results[f"s{n}"]["text"]
    assert "draining" in err and "stopping: received SIGTERM" in err


async def test_send_status_and_chat_against_a_running_daemon(tmp_path: Path) -> None:
    config = daemon_config(tmp_path, word_delay_s=0)
    proc, url = await trio.to_thread.run_sync(start_daemon, config)
    try:
        sent = await trio.to_thread.run_sync(
            lambda: run_cli("send", "-c", str(config), "hello there")
        )
        status = await trio.to_thread.run_sync(lambda: run_cli("status", "--url", url))
        chat = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                callboard_argv("chat", "-c", str(config), "--session", "repl"),
                input="first line\n/status\n",
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        )
        proc.send_signal(signal.SIGINT)
        code, _ = await trio.to_thread.run_sync(lambda: finish(proc, 20))
    finally:
        proc.kill()
        proc.wait()
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == "echo: hello there\n"
    assert status.returncode == 0
    assert status.stdout.splitlines()[0].startswith("root [supervisor] running")
    assert any("session:main:ws:cli" in line for line in status.stdout.splitlines())
    assert chat.returncode == 0 and chat.stdout.startswith("echo: first line\n")
    assert "turns: 1" in chat.stdout
    assert code == 0
    unreachable = await trio.to_thread.run_sync(
        lambda: run_cli("send", "--url", f"ws://127.0.0.1:{free_port()}", "hi")
    )
    assert unreachable.returncode == 3 and "unreachable" in unreachable.stderr
