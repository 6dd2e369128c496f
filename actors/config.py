"""Strict loading of `config.toml`.

The file is read with `tomllib` and validated by frozen pydantic models that
forbid unknown keys at every level. Every problem is reported as one line that
names the file and the dotted key path::

    config.toml: supervision.root.strategy: Input should be 'one_for_one',
    'one_for_all' or 'rest_for_one'

(one line in practice).

Without `-c FILE` the daemon uses the embedded default, the repository's own
`config.toml` (shipped inside the package as `actors/default.toml`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from actors.errors import ConfigError
from runtime import Strategy, SupervisorPolicy

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "AgentConfig",
    "CompactionConfig",
    "Config",
    "GatewayConfig",
    "HooksConfig",
    "LoadedConfig",
    "MaintenanceConfig",
    "ModelsConfig",
    "ProviderConfig",
    "SessionsConfig",
    "StateConfig",
    "SupervisionConfig",
    "SupervisionTable",
    "TelegramConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH: Final = Path(__file__).with_name("default.toml")
"""The embedded default: a copy of the repository's `config.toml`."""

CONFIG_ENV: Final = "CALLBOARD_CONFIG"
"""An environment variable naming the config file when `-c` is not given."""


def _model_name(value: str) -> str:
    provider, sep, name = value.partition("/")
    if not sep or not provider or not name:
        raise ValueError(f"{value!r} is not a model name of the form '<provider>/<model>'")
    return value


ModelName = Annotated[str, AfterValidator(_model_name)]
Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(_Strict):
    """`[gateway]`: where the daemon listens and how long it drains."""

    bind: str = "127.0.0.1"
    ws_port: Port = 18789
    http_port: Port = 18790
    token_env: str = "CALLBOARD_TOKEN"  # noqa: S105 - the variable's name, not a secret
    max_frame_bytes: int = Field(default=262_144, ge=1024)
    shutdown_grace_s: Seconds = 25.0


class StateConfig(_Strict):
    """`[state]`: the directory of sessions, cooldowns and offsets."""

    dir: str = ".callboard"


class ModelsConfig(_Strict):
    """`[models]`: the default chain, per-model chains, tiers and aliases."""

    primary: ModelName = "local/echo"
    fallbacks: tuple[ModelName, ...] = ()
    chains: dict[ModelName, tuple[ModelName, ...]] = Field(default_factory=dict)
    tiers: dict[str, tuple[ModelName, ...]] = Field(default_factory=dict)
    aliases: dict[str, ModelName] = Field(default_factory=dict)


class ProviderConfig(_Strict):
    """`[providers.<id>]`: one model provider."""

    kind: Literal["openai", "anthropic", "echo", "faulty"]
    base_url: str | None = None
    api_key_env: str | tuple[str, ...] | None = None

    @property
    def key_envs(self) -> tuple[str, ...]:
        """The key variables, one per auth profile."""
        if self.api_key_env is None:
            return ()
        if isinstance(self.api_key_env, str):
            return (self.api_key_env,)
        return self.api_key_env


class TelegramConfig(_Strict):
    """`[channels.telegram]`: the Bot API channel."""

    enabled: bool = False
    token_env: str = "TELEGRAM_BOT_TOKEN"  # noqa: S105 - the variable's name, not a secret
    api_base: str = "https://api.telegram.org"
    dm_policy: Literal["allowlist", "open", "disabled"] = "allowlist"
    allow_from: tuple[int | str, ...] = ()


class ChannelsConfig(_Strict):
    """`[channels]`."""

    telegram: TelegramConfig = TelegramConfig()


class MaintenanceConfig(_Strict):
    """`[sessions.maintenance]`: pruning, capping and rotation of the store."""

    mode: Literal["enforce", "warn"] = "enforce"
    prune_after_days: float = Field(default=30.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    rotate_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)


class SessionsConfig(_Strict):
    """`[sessions]`: passivation and maintenance."""

    idle_s: Seconds = 600.0
    maintenance: MaintenanceConfig = MaintenanceConfig()


class CompactionConfig(_Strict):
    """`[agent.compaction]`: when history is summarized."""

    after_turns: int = Field(default=40, ge=2)
    keep_turns: int = Field(default=10, ge=0)
    idle_s: Seconds = 1800.0

    @model_validator(mode="after")
    def _keep_fewer_than_after(self) -> CompactionConfig:
        if self.keep_turns >= self.after_turns:
            raise ValueError(
                f"keep_turns ({self.keep_turns}) must be below after_turns ({self.after_turns})"
            )
        return self


class AgentConfig(_Strict):
    """`[agent]`: the prompt the runner builds."""

    system_prompt: str = "You are a helpful assistant."
    history_turns: int = Field(default=20, ge=1)
    compaction: CompactionConfig = CompactionConfig()


class SupervisionConfig(_Strict):
    """`[supervision.<name>]`: one supervisor's restart policy.

    `shutdown_s` is the stop budget of each of this supervisor's children:
    asked to stop, a child is cancelled when it has not exited within it.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = Field(default=5, ge=0)
    within_s: float = Field(default=10.0, gt=0)
    backoff_min_s: Seconds = 0.05
    backoff_max_s: Seconds = 2.0
    backoff_jitter: float = Field(default=0.2, ge=0, le=1)
    shutdown_s: Seconds = 5.0

    @model_validator(mode="after")
    def _backoff_range(self) -> SupervisionConfig:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s:g}) must be >= "
                f"backoff_min_s ({self.backoff_min_s:g})"
            )
        return self

    def policy(self) -> SupervisorPolicy:
        """The runtime policy this table describes."""
        return SupervisorPolicy(
            strategy=self.strategy,
            max_restarts=self.max_restarts,
            within_s=self.within_s,
            backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s,
            backoff_jitter=self.backoff_jitter,
        )


class SupervisionTable(_Strict):
    """`[supervision]`: one table per supervisor of the tree."""

    root: SupervisionConfig = SupervisionConfig()
    models: SupervisionConfig = SupervisionConfig()
    sessions: SupervisionConfig = SupervisionConfig()
    channels: SupervisionConfig = SupervisionConfig()

    @model_validator(mode="after")
    def _sessions_is_dynamic(self) -> SupervisionTable:
        if self.sessions.strategy is not Strategy.ONE_FOR_ONE:
            raise ValueError(
                "sessions.strategy must be 'one_for_one': sessions is a dynamic supervisor"
            )
        return self


class HooksConfig(_Strict):
    """`[hooks]`: plugins and the default handler timeout."""

    plugins: tuple[str, ...] = ()
    timeout_s: float = Field(default=5.0, gt=0)


class Config(_Strict):
    """The whole of `config.toml`."""

    gateway: GatewayConfig = GatewayConfig()
    state: StateConfig = StateConfig()
    models: ModelsConfig = ModelsConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    channels: ChannelsConfig = ChannelsConfig()
    sessions: SessionsConfig = SessionsConfig()
    agent: AgentConfig = AgentConfig()
    supervision: SupervisionTable = SupervisionTable()
    hooks: HooksConfig = HooksConfig()


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config and where it came from.

    Attributes:
        path: the file read.
        config: its contents.
        state_dir: `[state] dir`, made absolute (relative to the file, or to the
            working directory for the embedded default).
    """

    path: Path
    config: Config
    state_dir: Path


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys the table at `loc` accepts, when `loc` names one of the models' tables."""
    model: type[BaseModel] = Config
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        if get_origin(annotation) is dict:
            if not parts:
                return None  # a table of tables: any id is allowed
            parts.pop(0)  # the id, as in [providers.<id>]
            annotation = get_args(annotation)[1]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return sorted(model.model_fields)


def _describe(error: ErrorDetails) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{_format_loc(loc)}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{_format_loc(loc)}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{_format_loc(loc)}: {message}"


def parse_config(data: Mapping[str, Any], path: Path | str) -> Config:
    """Validate parsed TOML; `ConfigError` lists every problem with file and key path."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [f"{path}: {_describe(err)}" for err in exc.errors()]) from exc
    problems = [f"{path}: {problem}" for problem in _cross_check(config)]
    if problems:
        raise ConfigError(path, problems)
    return config


def _cross_check(config: Config) -> list[str]:
    """Checks that span sections: every model names a declared provider."""
    problems: list[str] = []
    declared = set(config.providers)

    def check(key: str, model: str) -> None:
        provider = model.partition("/")[0]
        if provider not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(
                f"{key}: provider {provider!r} of {model!r} is not declared under "
                f"[providers] (declared: {known})"
            )

    check("models.primary", config.models.primary)
    for i, model in enumerate(config.models.fallbacks):
        check(f"models.fallbacks[{i}]", model)
    for head, chain in config.models.chains.items():
        check(f"models.chains.{head}", head)
        for i, model in enumerate(chain):
            check(f"models.chains.{head}[{i}]", model)
    for tier, chain in config.models.tiers.items():
        for i, model in enumerate(chain):
            check(f"models.tiers.{tier}[{i}]", model)
    for alias, model in config.models.aliases.items():
        check(f"models.aliases.{alias}", model)
    return problems


def load_config(path: Path | str | None = None) -> LoadedConfig:
    """Read and validate a config file.

    Args:
        path: the file; None means `$CALLBOARD_CONFIG`, else the embedded default.

    Raises:
        ConfigError: the file is missing, is not valid TOML, or fails validation.
    """
    embedded = False
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path, embedded = (Path(env), False) if env else (DEFAULT_CONFIG_PATH, True)
    path = Path(path)
    shown = "config.toml (embedded default)" if embedded else str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, [f"{shown}: no such file"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"{shown}: cannot read: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path, [f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{shown}: not valid TOML: {exc}"]) from exc
    config = parse_config(data, shown)
    base = Path.cwd() if embedded else path.resolve().parent
    state_dir = Path(config.state.dir).expanduser()
    if not state_dir.is_absolute():
        state_dir = base / state_dir
    return LoadedConfig(path=path, config=config, state_dir=state_dir)
