"""Example plugin: a usage log, one JSON line per answered model request.

Enable it in config.toml::

    [hooks]
    plugins = ["actors.plugins.usage_log"]

    [hooks.plugin."actors.plugins.usage_log"]
    options = { path = "usage.jsonl" }      # relative to [state] dir

Each line (written in the order requests were answered)::

    {"ts": 1764000000.123, "request_id": "...", "session_key": "main:ws:alice",
     "model": "openai/gpt-4o-mini", "provider": "openai", "source": "default",
     "input_tokens": 812, "output_tokens": 95, "attempts": 2,
     "failed": [{"model": "anthropic/claude-sonnet-4-5", "reason": "rate_limit"}],
     "duration_s": 1.84}

`failed` lists the attempts that did not serve the request (a failover when
not empty); `duration_s` sums every attempt. The file is appended to from a
worker thread, so a slow disk never blocks the daemon; each line is written
whole, with one `write`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Final

import trio

from actors.events import MODEL_RESPONSE, ModelResponse
from actors.plugins.plugin import Plugin

__all__ = ["DEFAULT_PATH", "register", "usage_record"]

DEFAULT_PATH: Final = "usage.jsonl"


def usage_record(event: ModelResponse, ts: float) -> dict[str, Any]:
    """The JSON object logged for `event`."""
    result = event.result
    return {
        "ts": round(ts, 3),
        "request_id": event.request_id,
        "session_key": event.session_key,
        "model": result.model,
        "provider": result.provider,
        "source": result.source,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "attempts": len(result.attempts),
        "failed": [
            {"model": a.model, "reason": a.reason} for a in result.attempts if a.reason != "ok"
        ],
        "duration_s": round(sum(a.duration_s for a in result.attempts), 4),
    }


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(line)


def register(plugin: Plugin) -> None:
    """Log every `model:response` to the JSONL file of option `path`."""
    raw = plugin.options.get("path", DEFAULT_PATH)
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"option path: expected a file name, not {raw!r}")
    path = Path(raw) if Path(raw).is_absolute() else plugin.state_dir / raw

    @plugin.on(MODEL_RESPONSE, ordered=True)
    async def log_usage(event: ModelResponse) -> None:
        line = json.dumps(usage_record(event, time.time()), separators=(",", ":")) + "\n"
        await trio.to_thread.run_sync(_append, path, line.encode())
