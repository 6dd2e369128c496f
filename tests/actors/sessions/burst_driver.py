"""A real daemon tree under load, for the kill -9 test: `python -m tests.actors.sessions.burst_driver CONFIG`.

It starts the tree `callboard run` starts (store, models, sessions) and runs
turns in several sessions at once, forever, printing `done <key> <turn>` on
stdout after each turn's answer is on disk. The test kills it with SIGKILL
in the middle of that burst.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from actors.app import Handles, build_tree
from actors.config import load_config
from actors.sessions.manager import SessionManager
from runtime import ActorSystem

SESSIONS = 8


async def main(path: str) -> None:
    loaded = load_config(Path(path))
    handles = Handles()
    tree, _ = build_tree(loaded, handles, env={})
    system = ActorSystem()

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        await system.run(tree.spec, handle_signals=False, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        manager = SessionManager(system.registry, handles.sessions, loaded.config)

        async def chat(n: int) -> None:
            key = f"main:burst:{n}"
            turn = 0
            while True:
                turn += 1
                result = await manager.turn(key, f"message {turn} " + "x" * 200, channel="burst")
                if result.state == "final":
                    print(f"done {key} {turn}", flush=True)

        print("ready", flush=True)
        for n in range(SESSIONS):
            nursery.start_soon(chat, n)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
