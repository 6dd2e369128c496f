"""The `callboard` command line.

callboard run   [-c FILE]     run the daemon until SIGTERM/SIGINT
callboard check [-c FILE]     validate the config and print the tree `run` would start
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Final

import trio

from actors.app import build_tree, run_daemon
from actors.channels.console import (
    DEFAULT_SESSION,
    chat_command,
    send_command,
    status_command,
)
from actors.config import LoadedConfig, load_config
from actors.errors import ConfigError, FaultSpecError, PluginError
from actors.faults import FaultPlan
from actors.plugins import LoadedPlugins, load_plugins
from actors.providers.fake_server import run_fake_provider
from actors.sessions.tool import sessions_command

__all__ = ["main"]

EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = 1
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callboard", description="A chat daemon that keeps answering when providers fail."
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help="config file (default: $CALLBOARD_CONFIG, else the embedded config.toml)",
        )
        return sub

    with_config("run", "run the daemon until SIGTERM or SIGINT")
    with_config("check", "validate the config and print the supervision tree run would start")
    for name, text in (
        ("chat", "chat with a running daemon, one line a turn"),
        ("send", "send one message to a running daemon and print the answer"),
        ("status", "print a running daemon's live actor tree"),
    ):
        sub = with_config(name, text)
        sub.add_argument(
            "--url", help="the gateway, e.g. ws://127.0.0.1:18789 (default: from the config)"
        )
        if name != "status":
            sub.add_argument(
                "--session", default=DEFAULT_SESSION, help="session name or key (default: cli)"
            )
        if name == "send":
            sub.add_argument("text", help="the message")
    sessions = commands.add_parser(
        "sessions", help="list, show and prune stored sessions", description="Stored sessions."
    )
    verbs = sessions.add_subparsers(dest="sessions_command", required=True, metavar="VERB")
    for verb, text in (
        ("list", "every session in the index, most recent first"),
        ("show", "one session's entry and transcript"),
        ("prune", "prune, cap and rotate now, per [sessions.maintenance]"),
    ):
        sub = verbs.add_parser(verb, help=text, description=text)
        sub.add_argument("-c", "--config", metavar="FILE", help="config file")
        if verb == "show":
            sub.add_argument("key", help="the session key, e.g. main:ws:alice")
        if verb == "prune":
            sub.add_argument("--dry-run", action="store_true", help="report without acting")
    fake = commands.add_parser(
        "fake-provider",
        help="serve a fake OpenAI + Anthropic endpoint that injects faults",
        description="Serve a fake LLM provider over real HTTP (OpenAI /v1/chat/completions and "
        "Anthropic /v1/messages). Change its faults while it runs with POST /_faults; "
        "read hit counts with GET /_stats.",
    )
    fake.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    fake.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    fake.add_argument(
        "--schedule",
        default="ok",
        help='fault schedule, e.g. "fail 2 with rate_limit then ok" (default: ok)',
    )
    fake.add_argument("--seed", type=int, default=None, help="seed of random faults")
    return parser


def _load(path: str | None) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _plugins(loaded: LoadedConfig) -> LoadedPlugins | None:
    try:
        return load_plugins(loaded)
    except PluginError as exc:
        for problem in exc.problems:
            print(f"{loaded.path}: {problem}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `callboard` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    if args.command == "fake-provider":
        return _fake_provider(args)
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    if args.command in ("check", "run"):
        plugins = _plugins(loaded)
        if plugins is None:
            return EXIT_CONFIG
        if args.command == "run":
            return trio.run(run_daemon, loaded, plugins)
        tree, notes = build_tree(loaded)
        print(f"{loaded.path}: ok (state in {loaded.state_dir})")
        for note in notes:
            print(f"# {note}")
        for line in plugins.describe():
            print(f"# plugin {line}")
        print(tree.render())
        return 0
    if args.command == "sessions":
        return sessions_command(args, loaded)
    if args.command == "send":
        return trio.run(send_command, loaded, args.url, args.session, args.text)
    if args.command == "chat":
        return trio.run(chat_command, loaded, args.url, args.session)
    if args.command == "status":
        return trio.run(status_command, loaded, args.url)
    return EXIT_USAGE  # argparse rejects unknown commands before this


async def _serve_fake_until_signalled(
    host: str, port: int, schedule: str, seed: int | None
) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            nursery.start_soon(
                functools.partial(run_fake_provider, host, port, schedule=schedule, seed=seed)
            )
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def _fake_provider(args: argparse.Namespace) -> int:
    try:
        FaultPlan(args.schedule, seed=args.seed)
    except FaultSpecError as exc:
        print(f"--schedule: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    failure: OSError | None = None
    try:
        trio.run(_serve_fake_until_signalled, args.host, args.port, args.schedule, args.seed)
    except* OSError as group:
        first = group.exceptions[0]
        failure = first if isinstance(first, OSError) else None
    if failure is not None:
        print(
            f"fake-provider: cannot listen on {args.host}:{args.port}: {failure}", file=sys.stderr
        )
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
