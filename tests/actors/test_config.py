"""Config loading: every error names the file and the key path; nothing bad is accepted."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from actors.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, load_config
from actors.errors import ConfigError
from runtime import Strategy

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.replace(str(path), "config.toml") for p in info.value.problems]


def test_the_embedded_default_is_the_repository_config() -> None:
    assert DEFAULT_CONFIG_PATH.read_bytes() == REPO_CONFIG.read_bytes()
    loaded = load_config(DEFAULT_CONFIG_PATH)
    assert loaded.config.gateway.ws_port == 18789
    assert loaded.config.models.primary == "anthropic/claude-sonnet-4-5"
    assert set(loaded.config.providers) == {"anthropic", "openai", "local"}


def test_no_path_means_the_env_variable_else_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    loaded = load_config(None)
    assert loaded.path == DEFAULT_CONFIG_PATH
    assert loaded.state_dir == tmp_path / ".callboard"  # the working directory
    mine = write(tmp_path, '[providers.local]\nkind = "echo"\n[models]\nprimary = "local/echo"\n')
    monkeypatch.setenv(CONFIG_ENV, str(mine))
    assert load_config(None).path == mine


def test_wrong_strategy_names_the_key_and_the_choices(tmp_path: Path) -> None:
    assert problems(tmp_path, '[supervision.root]\nstrategy = "one_for_some"\n') == [
        "config.toml: supervision.root.strategy: Input should be 'one_for_one', "
        "'one_for_all' or 'rest_for_one'"
    ]


def test_unknown_keys_are_errors_that_list_what_is_allowed(tmp_path: Path) -> None:
    found = problems(tmp_path, "[gateway]\nbnd = '0.0.0.0'\n[nonsense]\nx = 1\n")
    assert found == [
        "config.toml: gateway.bnd: unknown key (allowed here: bind, http_port, "
        "idempotency_ttl_s, max_connections, max_frame_bytes, send_queue, shutdown_grace_s, "
        "token_env, ws_port)",
        "config.toml: nonsense: unknown key (allowed here: agent, channels, gateway, hooks, "
        "models, providers, sessions, state, supervision)",
    ]


def test_unknown_key_inside_a_table_of_tables(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[providers.local]\nkind = "echo"\ncolour = "red"\n[models]\nprimary="local/echo"\n',
    )
    assert found == [
        "config.toml: providers.local.colour: unknown key "
        "(allowed here: kind, prefill, retries, timeouts, word_delay_s)"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[gateway]
ws_port = 70000
shutdown_grace_s = -1
[supervision.channels]
max_restarts = "many"
backoff_min_s = 5
backoff_max_s = 1
""",
    )
    assert "config.toml: gateway.ws_port: Input should be less than or equal to 65535" in found
    assert (
        "config.toml: gateway.shutdown_grace_s: Input should be greater than or equal to 0" in found
    )
    assert any(
        p.startswith(
            "config.toml: supervision.channels.max_restarts: Input should be a valid integer"
        )
        for p in found
    )
    assert len(found) == 3  # backoff range is checked once the fields themselves are valid


def test_cross_field_checks_name_their_table(tmp_path: Path) -> None:
    found = problems(tmp_path, "[supervision.models]\nbackoff_min_s = 5\nbackoff_max_s = 1\n")
    assert found == [
        "config.toml: supervision.models: backoff_max_s (1) must be >= backoff_min_s (5)"
    ]
    found = problems(tmp_path, '[supervision.sessions]\nstrategy = "one_for_all"\n')
    assert found == [
        "config.toml: supervision: sessions.strategy must be 'one_for_one': "
        "sessions is a dynamic supervisor"
    ]


def test_models_must_name_declared_providers(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[providers.local]
kind = "echo"
[models]
primary = "local/echo"
fallbacks = ["local/echo", "openai/gpt-4o", "nameless"]
""",
    )
    assert found == [
        "config.toml: models.fallbacks[2]: 'nameless' is not a model name of the form "
        "'<provider>/<model>'"
    ]
    found = problems(
        tmp_path,
        '[providers.local]\nkind = "echo"\n[models]\nprimary = "local/echo"\nfallbacks = ["openai/gpt-4o"]\n',
    )
    assert found == [
        "config.toml: models.fallbacks[0]: provider 'openai' of 'openai/gpt-4o' is not declared "
        "under [providers] (declared: local)"
    ]


def test_provider_kind_must_be_known(tmp_path: Path) -> None:
    found = problems(tmp_path, '[providers.x]\nkind = "gemini"\n[models]\nprimary = "x/y"\n')
    assert found == [
        "config.toml: providers.x.kind: Input should be 'openai', 'anthropic', 'echo' or 'faulty'"
    ]


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.problems == (f"{tmp_path / 'absent.toml'}: no such file",)


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "[gateway]\nbind = \n")
    assert len(found) == 1
    assert found[0].startswith("config.toml: not valid TOML: ")
    assert "line 2" in found[0]


def test_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[gateway]\nbind = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


def test_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    path = sub / "callboard.toml"
    path.write_text(
        '[state]\ndir = "data"\n[providers.local]\nkind="echo"\n[models]\nprimary="local/echo"\n'
    )
    assert load_config(path).state_dir == sub / "data"


def test_supervision_tables_become_runtime_policies() -> None:
    loaded = load_config(REPO_CONFIG)
    policy = loaded.config.supervision.root.policy()
    raw = tomllib.loads(REPO_CONFIG.read_text())["supervision"]["root"]
    assert policy.strategy is Strategy(raw["strategy"])
    assert (policy.max_restarts, policy.within_s) == (raw["max_restarts"], raw["within_s"])
    assert policy.backoff_jitter == raw["backoff_jitter"]


def test_config_models_are_frozen() -> None:
    from pydantic import ValidationError

    loaded = load_config(REPO_CONFIG)
    with pytest.raises(ValidationError, match="frozen"):
        loaded.config.gateway.bind = "0.0.0.0"  # type: ignore[misc]


def test_provider_keys_depend_on_the_kind(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[providers.local]\nkind = "echo"\napi_key_env = "X"\n'
        '[providers.oa]\nkind = "openai"\n[providers.oa.timeouts]\nfirst_token_s = 0\n'
        '[models]\nprimary = "local/echo"\n',
    )
    assert found[0].startswith("config.toml: providers.local.api_key_env: unknown key")
    assert found[1] == (
        "config.toml: providers.oa.timeouts.first_token_s: Input should be greater than 0"
    )


def test_faulty_schedules_and_targets_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[providers.local]
kind = "echo"
[providers.flaky]
kind = "faulty"
wraps = "local"
schedule = "fail 2 with rate_limt"
[providers.loop]
kind = "faulty"
wraps = "loop"
[providers.ghost]
kind = "faulty"
wraps = "nowhere"
[models]
primary = "local/echo"
""",
    )
    assert found[0].startswith(
        "config.toml: providers.flaky: fault schedule 'fail 2 with rate_limt': unknown fault 'rate_limt'"
    )
    found = problems(
        tmp_path,
        '[providers.local]\nkind = "echo"\n[providers.loop]\nkind = "faulty"\nwraps = "loop"\n'
        '[providers.ghost]\nkind = "faulty"\nwraps = "nowhere"\n[models]\nprimary = "local/echo"\n',
    )
    assert found == [
        "config.toml: providers.loop.wraps: a faulty provider cannot wrap itself",
        "config.toml: providers.ghost.wraps: 'nowhere' is not declared under [providers] "
        "(declared: local, loop)",
    ]


def test_a_missing_provider_kind(tmp_path: Path) -> None:
    found = problems(tmp_path, '[providers.x]\nbase_url = "http://h"\n[models]\nprimary = "x/y"\n')
    assert found == ["config.toml: providers.x.kind: required key is missing"]


def test_channel_pins_name_a_channel_and_a_declared_model(tmp_path: Path) -> None:
    base = '[providers.local]\nkind = "echo"\n[models]\nprimary = "local/echo"\n'
    base += '[models.aliases]\nfast = "local/echo"\n'
    found = problems(
        tmp_path,
        base + '[channels.pins]\nwebsocket = "ghost/x"\nirc = "local/echo"\nhttp = "fast"\n',
    )
    assert found == [
        "config.toml: channels.pins.websocket: provider 'ghost' of 'ghost/x' is not declared "
        "under [providers] (declared: local)",
        "config.toml: channels.pins.irc: not a channel (channels: websocket, http, telegram)",
    ]
    path = write(tmp_path, base + '[channels.pins]\ntelegram = "auto"\nhttp = "fast"\n')
    assert load_config(path).config.channels.pins == {"telegram": "auto", "http": "fast"}
