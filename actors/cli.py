"""The `callboard` command line.

callboard run   [-c FILE]     run the daemon until SIGTERM/SIGINT
callboard check [-c FILE]     validate the config and print the tree `run` would start
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Final

import trio

from actors.app import build_tree, run_daemon
from actors.config import LoadedConfig, load_config
from actors.errors import ConfigError

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
    return parser


def _load(path: str | None) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `callboard` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    if args.command == "check":
        print(f"{loaded.path}: ok (state in {loaded.state_dir})")
        print(build_tree(loaded).render())
        return 0
    if args.command == "run":
        return trio.run(run_daemon, loaded)
    return EXIT_USAGE  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
