"""The command line, as real processes: check, run, and a graceful stop on signals."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.process import REPO, finish, run_cli, start_cli, wait_for_line, write_config

pytestmark = pytest.mark.process


def test_check_prints_the_tree_run_would_start(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{config}: ok (state in {tmp_path / 'state'})"
    assert lines[1].startswith("root [supervisor] one_for_one")
    assert any(line.startswith("  sessions [supervisor] dynamic, one_for_one") for line in lines)
    assert any(line.startswith("  channels [supervisor] one_for_one") for line in lines)
    assert not (tmp_path / "state").exists()  # check starts nothing


def test_check_of_the_embedded_default(tmp_path: Path) -> None:
    result = run_cli("check", cwd=tmp_path, env={"CALLBOARD_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert "root [supervisor]" in result.stdout


def test_check_reports_every_error_and_exits_1(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '[supervision.root]\nstrategy = "one_for_none"\nmax_restarts = -2\n'
    )
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{config}: supervision.root.strategy: Input should be 'one_for_one', 'one_for_all' or 'rest_for_one'",
        f"{config}: supervision.root.max_restarts: Input should be greater than or equal to 0",
    ]


def test_run_with_a_bad_config_starts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[hooks]\nplugns = []\n")
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 1
    assert "hooks.plugns: unknown key" in result.stderr
    assert "supervision tree started" not in result.stderr
    assert not (tmp_path / "state").exists()


def test_run_with_a_missing_config_file(tmp_path: Path) -> None:
    result = run_cli("run", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path / 'nope.toml'}: no such file"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_gracefully_on_a_signal_with_exit_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    grace_s = 5
    config = write_config(tmp_path, grace_s=grace_s)
    proc = start_cli("run", "-c", str(config), cwd=REPO)
    assert proc.stderr is not None
    wait_for_line(proc.stderr, "supervision tree started")
    proc.send_signal(signum)
    code, err = finish(proc, timeout_s=grace_s + 10)  # a guard against a hang
    assert code == 0, err
    assert f"stopping: received {signum.name}" in err


def test_fake_provider_serves_faults_over_real_http(tmp_path: Path) -> None:
    import re

    import httpx

    proc = start_cli(
        "fake-provider", "--port", "0", "--schedule", "fail 1 with rate_limit retry_after=2 then ok"
    )
    assert proc.stderr is not None
    line = wait_for_line(proc.stderr, "fake provider listening on")[-1]
    port = int(re.search(r":(\d+)\s*$", line.strip()).group(1))  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=base) as http:
        limited = http.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer k1"}
        )
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        ok = http.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer k1"})
        assert (
            ok.status_code == 200
            and "You said: hi" in ok.json()["choices"][0]["message"]["content"]
        )
        assert (
            http.post("/_faults", json={"schedule": "fail forever with overloaded"}).status_code
            == 200
        )
        anthropic = http.post(
            "/v1/messages", json={**body, "max_tokens": 10}, headers={"x-api-key": "k2"}
        )
        assert anthropic.status_code == 529
        stats = http.get("/_stats").json()
    assert stats["by_key"] == {"k1": 2, "k2": 1}
    assert stats["by_route"] == {"POST /v1/chat/completions": 2, "POST /v1/messages": 1}
    proc.send_signal(signal.SIGINT)
    code, _ = finish(proc, timeout_s=10)
    assert code == 0


def test_fake_provider_rejects_a_bad_schedule() -> None:
    result = run_cli("fake-provider", "--port", "0", "--schedule", "fail 2 with rate_limt")
    assert result.returncode == 1
    assert (
        "--schedule: fault schedule 'fail 2 with rate_limt': unknown fault 'rate_limt'"
        in result.stderr
    )


def _sessions_state(tmp_path: Path) -> Path:
    import time

    from actors.sessions.store import FileBackend, SessionEntry
    from actors.sessions.transcript import encode

    config = write_config(tmp_path, "[sessions.maintenance]\nprune_after_days = 7\n")
    backend = FileBackend(tmp_path / "state")
    now = time.time()
    entries = {}
    for key, sid, age_days in [("main:ws:alice", "s-alice", 0), ("main:ws:old", "s-old", 30)]:
        ts = now - age_days * 86_400
        backend.append(
            [
                (
                    sid,
                    [
                        encode(
                            {
                                "type": "session",
                                "key": key,
                                "session_id": sid,
                                "created_at": ts,
                                "ts": ts,
                            }
                        ),
                        encode(
                            {
                                "type": "message",
                                "role": "user",
                                "content": "hello",
                                "turn": 1,
                                "ts": ts,
                            }
                        ),
                        encode(
                            {
                                "type": "message",
                                "role": "assistant",
                                "content": "echo: hello",
                                "turn": 1,
                                "ts": ts,
                                "model": "local/echo",
                            }
                        ),
                    ],
                )
            ]
        )
        entries[key] = SessionEntry(
            key=key,
            session_id=sid,
            created_at=ts,
            updated_at=ts,
            turns=1,
            last_model="local/echo",
            transcript=backend.transcript_path(sid),
        )
    backend.save_index(entries)
    backend.close()
    return config


def test_sessions_list_show_and_prune(tmp_path: Path) -> None:
    config = _sessions_state(tmp_path)
    listed = run_cli("sessions", "list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["KEY", "TURNS", "UPDATED", "MODEL", "SESSION"]
    assert [line.split()[0] for line in lines[1:]] == ["main:ws:alice", "main:ws:old"]
    shown = run_cli("sessions", "show", "main:ws:alice", "-c", str(config))
    assert shown.returncode == 0
    assert "session id:   s-alice" in shown.stdout
    assert (
        "[1] user: hello" in shown.stdout
        and "[1] assistant (local/echo): echo: hello" in shown.stdout
    )
    missing = run_cli("sessions", "show", "main:ws:nobody", "-c", str(config))
    assert missing.returncode == 1 and "no session 'main:ws:nobody'" in missing.stderr
    dry = run_cli("sessions", "prune", "--dry-run", "-c", str(config))
    assert "1 session(s) would be pruned" in dry.stdout and "main:ws:old" in dry.stdout
    assert (tmp_path / "state" / "sessions" / "s-old.jsonl").exists()
    pruned = run_cli("sessions", "prune", "-c", str(config))
    assert "1 session(s) pruned" in pruned.stdout
    assert (tmp_path / "state" / "sessions" / "archive" / "s-old.jsonl").exists()
    after = run_cli("sessions", "list", "-c", str(config))
    assert "main:ws:old" not in after.stdout and "main:ws:alice" in after.stdout
