"""The example plugins, as a user runs them: `callboard run` with both enabled
in its config, a primary that fails, and `callboard send`.
"""

from __future__ import annotations

import json
import re
import signal
import tomllib
from pathlib import Path

import pytest

from actors.config import LoadedConfig, parse_config
from actors.models import Attempt
from actors.plugins import load_plugins
from actors.plugins.failover_notice import explain
from tests.process import REPO, finish, run_cli, start_cli, wait_for_line

pytestmark = pytest.mark.process

CONFIG = """
[gateway]
ws_port = 0
http_port = 0
shutdown_grace_s = 5
[state]
dir = "state"
[providers.local]
kind = "echo"
[providers.flaky]
kind = "faulty"
wraps = "local"
schedule = "fail 1 with rate_limit then ok"
retries = 0
[models]
primary = "flaky/main"
fallbacks = ["local/echo"]
[hooks]
plugins = ["actors.plugins.usage_log", "actors.plugins.failover_notice"]
[hooks.plugin."actors.plugins.usage_log"]
options = { path = "logs/usage.jsonl" }
"""


def test_the_usage_log_and_the_failover_notice_in_a_running_daemon(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    proc = start_cli("run", "-c", str(config), cwd=REPO)
    try:
        assert proc.stderr is not None
        started = wait_for_line(proc.stderr, "websocket listening on")
        url = started[-1].rsplit(" ", 1)[-1].strip()
        first = run_cli("send", "--url", url, "--session", "u", "hello")
        second = run_cli("send", "--url", url, "--session", "u", "again")
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc, 20)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0
    loaded = [line.split("callboard.app: ", 1)[1].strip() for line in started if "plugin " in line]
    assert loaded == [
        "plugin actors.plugins.usage_log [config]: model:response",
        "plugin actors.plugins.failover_notice [config]: message:sending (interceptor), "
        "model:failover",
    ]
    # The first turn failed over (the rate limit), and says so; the second did not.
    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        "echo: hello\n\n_(answered by local/echo: flaky/main was rate limited)_\n"
    )
    assert second.stdout == "echo: again\n"
    # on_model_failover logged the move for the operator.
    assert "request " in err and "flaky/main was rate limited" in err
    # One usage line a request, in order.
    lines = (tmp_path / "state" / "logs" / "usage.jsonl").read_text().splitlines()
    usage = [json.loads(line) for line in lines]
    assert [u["model"] for u in usage] == ["local/echo", "flaky/main"]
    assert usage[0]["failed"] == [{"model": "flaky/main", "reason": "rate_limit"}]
    assert usage[0]["attempts"] == 2
    assert usage[1]["failed"] == []
    assert all(u["session_key"] == "main:ws:u" for u in usage)
    assert usage[0]["output_tokens"] == 2


def test_explain_reads_each_reason_once() -> None:
    def attempt(model: str, reason: str) -> Attempt:
        return Attempt(model=model, provider=model.partition("/")[0], profile=None, reason=reason)

    attempts = [
        attempt("a/x", "overloaded"),
        attempt("a/x", "overloaded"),
        attempt("b/y", "skipped: rate_limit cooldown"),
        attempt("c/z", "weird_new_class"),
        attempt("d/w", "ok"),
    ]
    assert explain(attempts) == (
        "a/x was overloaded; b/y was skipped (rate_limit cooldown); c/z failed (weird_new_class)"
    )
    assert explain([attempt("d/w", "ok")]) == ""


def test_the_example_commented_out_in_config_toml_loads(tmp_path: Path) -> None:
    text = (REPO / "config.toml").read_text()
    start = text.index("[hooks]")
    uncommented: list[str] = []
    for line in text[start:].splitlines():
        if line.startswith("plugins = []"):
            continue  # replaced by the commented example
        if re.match(
            r"# (plugins|\[hooks\.plugin\.|options|timeout_s|fail_open|priority|enabled)", line
        ):
            uncommented.append(line[2:])
        else:
            uncommented.append(line)
    config = parse_config(tomllib.loads(text[:start] + "\n".join(uncommented)), "config.toml")
    assert config.hooks.plugins == ("actors.plugins.usage_log", "actors.plugins.failover_notice")
    plugins = load_plugins(LoadedConfig(Path("config.toml"), config, tmp_path))
    assert [p.name for p in plugins.plugins] == list(config.hooks.plugins)
    usage, notice = plugins.plugins
    assert usage.options == {"path": "usage.jsonl"}
    assert notice.settings.fail_open is True
