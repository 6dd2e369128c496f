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

from actors.errors import ConfigError, FaultSpecError
from actors.faults import FaultPlan
from runtime import Strategy, SupervisorPolicy

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "PROVIDER_KINDS",
    "AgentConfig",
    "AnthropicProviderConfig",
    "CompactionConfig",
    "Config",
    "EchoProviderConfig",
    "FailoverConfig",
    "FaultyProviderConfig",
    "GatewayConfig",
    "HooksConfig",
    "LoadedConfig",
    "MaintenanceConfig",
    "ModelsConfig",
    "OpenAIProviderConfig",
    "ProviderConfig",
    "SessionsConfig",
    "StateConfig",
    "SupervisionConfig",
    "SupervisionTable",
    "TelegramConfig",
    "TimeoutsConfig",
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
    token_env: str = "CALLBOARD_TOKEN"
    max_frame_bytes: int = Field(default=262_144, ge=1024)
    shutdown_grace_s: Seconds = 25.0
    send_queue: int = Field(default=256, ge=1)
    """Frames a WebSocket client may fall behind; a slower one is disconnected (1013)."""
    idempotency_ttl_s: float = Field(default=300.0, gt=0)
    """How long a `chat.send` idempotency key is remembered."""
    max_connections: int = Field(default=10_000, ge=1)


class StateConfig(_Strict):
    """`[state]`: the directory of sessions, cooldowns and offsets."""

    dir: str = ".callboard"


def _primary(value: str) -> str:
    return value if value == "auto" else _model_name(value)


class FailoverConfig(_Strict):
    """`[models.failover]`: retries, breakers and cooldown ladders."""

    total_s: float = Field(default=180.0, gt=0)
    """The whole request's deadline, across every attempt."""
    probe_interval_s: float = Field(default=15.0, gt=0)
    """An open breaker lets one request probe its route this often."""
    breaker_failures: int = Field(default=1, ge=1)
    """Failed requests in a row (after their retries) that open a route's breaker."""
    retry_base_s: float = Field(default=0.5, ge=0)
    retry_max_s: float = Field(default=8.0, ge=0)
    max_retry_wait_s: float = Field(default=10.0, ge=0)
    """A retry-after longer than this cools the key instead of waiting."""
    rate_limit_ladder_s: tuple[float, ...] = (30.0, 60.0, 300.0)
    auth_ladder_s: tuple[float, ...] = (300.0, 1800.0, 7200.0)
    auth_permanent_s: float = Field(default=86_400.0, gt=0)
    billing_ladder_s: tuple[float, ...] = (18_000.0, 36_000.0, 72_000.0, 86_400.0)
    clean_period_s: float = Field(default=1800.0, gt=0)
    """A key without a fault this long starts its ladders again from the first step."""

    @model_validator(mode="after")
    def _ladders(self) -> FailoverConfig:
        for name in ("rate_limit_ladder_s", "auth_ladder_s", "billing_ladder_s"):
            ladder = getattr(self, name)
            if not ladder or any(step <= 0 for step in ladder):
                raise ValueError(f"{name} must list positive durations")
        if self.retry_max_s < self.retry_base_s:
            raise ValueError(
                f"retry_max_s ({self.retry_max_s:g}) must be >= "
                f"retry_base_s ({self.retry_base_s:g})"
            )
        return self


class ModelsConfig(_Strict):
    """`[models]`: the default chain, per-model chains, tiers, aliases and windows."""

    primary: Annotated[str, AfterValidator(_primary)] = "local/echo"
    fallbacks: tuple[ModelName, ...] = ()
    chains: dict[ModelName, tuple[ModelName, ...]] = Field(default_factory=dict)
    tiers: dict[str, tuple[ModelName, ...]] = Field(default_factory=dict)
    aliases: dict[str, ModelName] = Field(default_factory=dict)
    windows: dict[ModelName, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    """Context windows in tokens: a context overflow moves only to a larger window."""
    failover: FailoverConfig = FailoverConfig()


class TimeoutsConfig(_Strict):
    """`[providers.<id>.timeouts]`: the per-attempt budget, each a trio scope.

    `connect_s` bounds opening the connection, `first_token_s` the wait for the
    first piece of answer, `idle_s` the silence between two pieces.
    """

    connect_s: float = Field(default=10.0, gt=0)
    first_token_s: float = Field(default=60.0, gt=0)
    idle_s: float = Field(default=60.0, gt=0)


class _ProviderBase(_Strict):
    retries: int = Field(default=1, ge=0, le=10)
    """Extra attempts on the same route for rate_limit, overloaded, server_error, network."""
    timeouts: TimeoutsConfig = TimeoutsConfig()
    prefill: bool | None = None
    """Whether the models accept a trailing assistant message to continue (default by kind)."""

    @property
    def key_envs(self) -> tuple[str, ...]:
        """The key variables, one per auth profile (none for keyless kinds)."""
        return ()


class _HttpProvider(_ProviderBase):
    api_key_env: str | tuple[str, ...] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (OpenRouter's HTTP-Referer, for instance)."""

    @property
    def key_envs(self) -> tuple[str, ...]:
        if self.api_key_env is None:
            return ()
        if isinstance(self.api_key_env, str):
            return (self.api_key_env,)
        return self.api_key_env


class OpenAIProviderConfig(_HttpProvider):
    """`kind = "openai"`: OpenAI Chat Completions and compatible servers."""

    kind: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"


class AnthropicProviderConfig(_HttpProvider):
    """`kind = "anthropic"`: the Anthropic Messages API."""

    kind: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    max_tokens: int = Field(default=4096, ge=1)
    """Sent when a request does not say (the Messages API requires it)."""
    version: str = "2023-06-01"


class EchoProviderConfig(_ProviderBase):
    """`kind = "echo"`: local and deterministic; streams the prompt back word by word."""

    kind: Literal["echo"]
    word_delay_s: float = Field(default=0.0, ge=0)


class FaultyProviderConfig(_ProviderBase):
    """`kind = "faulty"`: wraps another provider and injects faults on a schedule."""

    kind: Literal["faulty"]
    wraps: str
    schedule: str = "ok"
    probabilities: dict[str, float] = Field(default_factory=dict)
    seed: int | None = None

    @model_validator(mode="after")
    def _schedule_parses(self) -> FaultyProviderConfig:
        try:
            FaultPlan(self.schedule, self.probabilities, self.seed)
        except FaultSpecError as exc:
            raise ValueError(str(exc)) from exc
        return self


ProviderConfig = Annotated[
    OpenAIProviderConfig | AnthropicProviderConfig | EchoProviderConfig | FaultyProviderConfig,
    Field(discriminator="kind"),
]
PROVIDER_KINDS: Final = ("openai", "anthropic", "echo", "faulty")


class TelegramConfig(_Strict):
    """`[channels.telegram]`: the Bot API channel."""

    enabled: bool = False
    token_env: str = "TELEGRAM_BOT_TOKEN"
    api_base: str = "https://api.telegram.org"
    dm_policy: Literal["allowlist", "open", "disabled"] = "allowlist"
    allow_from: tuple[int | str, ...] = ()
    """Telegram user ids, or @usernames, allowed to talk when dm_policy = "allowlist"."""
    poll_timeout_s: int = Field(default=30, ge=0, le=50)
    """getUpdates long-polling timeout, sent to Telegram."""
    stall_s: float = Field(default=90.0, gt=0)
    """No answer from getUpdates for this long: the watchdog restarts polling."""
    typing_interval_s: float = Field(default=4.0, gt=0)
    """How often "typing..." is sent while a turn runs."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Budget of each Bot API call other than getUpdates."""
    retries: int = Field(default=3, ge=0, le=10)
    """Attempts after a 429 or a network error, honouring retry_after."""
    agent: str = "main"
    """The agent part of the session keys (`<agent>:telegram:dm:<chat id>`)."""

    @model_validator(mode="after")
    def _watchdog_outlasts_the_poll(self) -> TelegramConfig:
        if self.stall_s <= self.poll_timeout_s:
            raise ValueError(
                f"stall_s ({self.stall_s:g}) must be longer than poll_timeout_s "
                f"({self.poll_timeout_s}): every quiet long poll would look stalled"
            )
        return self


PIN_CHANNELS: Final = ("websocket", "http", "telegram")
"""The channels `[channels.pins]` may name."""


class ChannelsConfig(_Strict):
    """`[channels]`."""

    telegram: TelegramConfig = TelegramConfig()
    pins: dict[str, str] = Field(default_factory=dict)
    """A channel's preferred model (websocket, http, telegram), below a session's pin."""


class MaintenanceConfig(_Strict):
    """`[sessions.maintenance]`: pruning, capping and rotation of the store."""

    mode: Literal["enforce", "warn"] = "enforce"
    prune_after_days: float = Field(default=30.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    rotate_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    interval_s: float = Field(default=3600.0, gt=0)
    """Maintenance runs this often (and on demand: `callboard sessions prune`)."""


class SessionsConfig(_Strict):
    """`[sessions]`: session actors and their store."""

    idle_s: float = Field(default=600.0, gt=0)
    """A session without a message this long is passivated (restored on the next)."""
    queue_limit: int = Field(default=16, ge=1)
    """Messages that may wait behind a running turn; more are refused as busy."""
    turn_timeout_s: float = Field(default=300.0, gt=0)
    """The whole budget of one turn, compaction retry included."""
    index_flush_s: float = Field(default=2.0, gt=0)
    """Index changes reach the disk at most this long after they are made."""
    cache_ttl_s: float = Field(default=2.0, ge=0)
    """How long the index cache is trusted before the file's mtime and size are checked."""
    maintenance: MaintenanceConfig = MaintenanceConfig()
    path_map: dict[str, str] = Field(default_factory=dict)
    """Local path prefix -> the prefix stored in the index (host <-> container)."""


class CompactionConfig(_Strict):
    """`[agent.compaction]`: when history is summarized."""

    after_turns: int = Field(default=40, ge=2)
    keep_turns: int = Field(default=10, ge=0)
    idle_s: Seconds = 300.0

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


class PluginSettings(_Strict):
    """`[hooks.plugin.<name>]`: one plugin's settings, overriding what its code asks for."""

    enabled: bool = True
    timeout_s: float | None = Field(default=None, gt=0)
    """Every handler's time limit a call (default: the handler's own, else `[hooks] timeout_s`)."""
    fail_open: bool | None = None
    """Whether its interceptors are skipped (true) or veto (false) when they fail or time out."""
    priority: int | None = None
    """The priority of all its interceptors (lower runs first)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings handed to the plugin as `plugin.options`."""


class HooksConfig(_Strict):
    """`[hooks]`: plugins and the default handler timeout."""

    plugins: tuple[str, ...] = ()
    """Modules to load as plugins (`pkg.module`; its `register(plugin)` is called)."""
    entry_points: bool = True
    """Also load the plugins installed under the `callboard.plugins` entry-point group."""
    timeout_s: float = Field(default=5.0, gt=0)
    plugin: dict[str, PluginSettings] = Field(default_factory=dict)
    """Settings per plugin, by name: its module path, or its entry point's name."""


def _default_providers() -> dict[str, ProviderConfig]:
    return {"local": EchoProviderConfig(kind="echo")}


class Config(_Strict):
    """The whole of `config.toml`."""

    gateway: GatewayConfig = GatewayConfig()
    state: StateConfig = StateConfig()
    models: ModelsConfig = ModelsConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=_default_providers)
    """Without a [providers] table, one: `local`, the echo provider."""
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


_PROVIDER_MODELS: Final[Mapping[str, type[BaseModel]]] = {
    "openai": OpenAIProviderConfig,
    "anthropic": AnthropicProviderConfig,
    "echo": EchoProviderConfig,
    "faulty": FaultyProviderConfig,
}


def _untag(loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], str | None]:
    """Drop the union tag pydantic puts in provider paths: providers.x.openai.k -> providers.x.k."""
    if len(loc) >= 3 and loc[0] == "providers" and loc[2] in _PROVIDER_MODELS:
        return (*loc[:2], *loc[3:]), str(loc[2])
    return loc, None


def _allowed_keys(loc: tuple[int | str, ...], kind: str | None) -> list[str] | None:
    """The keys the table at `loc` accepts, when `loc` names one of the models' tables."""
    model: type[BaseModel] = Config
    parts = list(loc)
    if kind is not None and len(parts) >= 2:
        model, parts = _PROVIDER_MODELS[kind], parts[2:]
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        if get_origin(annotation) is dict:
            if not parts:
                return None  # a table of tables: any id is allowed
            parts.pop(0)  # the id, as in [models.chains.<model>]
            annotation = get_args(annotation)[1]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return sorted(model.model_fields)


def _describe(error: ErrorDetails) -> str:
    loc, kind = _untag(tuple(error["loc"]))
    where = _format_loc(loc)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], kind)
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    if error["type"] == "union_tag_invalid":
        kinds = ", ".join(f"'{k}'" for k in PROVIDER_KINDS[:-1]) + f" or '{PROVIDER_KINDS[-1]}'"
        return f"{where}.kind: Input should be {kinds}"
    if error["type"] == "union_tag_not_found":
        return f"{where}.kind: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


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

    if config.models.primary != "auto":
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
    for model in config.models.windows:
        check(f"models.windows.{model}", model)
    for channel, model in config.channels.pins.items():
        if channel not in PIN_CHANNELS:
            problems.append(
                f"channels.pins.{channel}: not a channel (channels: {', '.join(PIN_CHANNELS)})"
            )
        elif model != "auto" and model not in config.models.aliases:
            check(f"channels.pins.{channel}", model)
    for pid, provider in config.providers.items():
        if not isinstance(provider, FaultyProviderConfig):
            continue
        target = config.providers.get(provider.wraps)
        if provider.wraps == pid:
            problems.append(f"providers.{pid}.wraps: a faulty provider cannot wrap itself")
        elif target is None:
            known = ", ".join(sorted(declared - {pid})) or "none"
            problems.append(
                f"providers.{pid}.wraps: {provider.wraps!r} is not declared under "
                f"[providers] (declared: {known})"
            )
        elif isinstance(target, FaultyProviderConfig):
            problems.append(
                f"providers.{pid}.wraps: {provider.wraps!r} is itself faulty; wrap a real provider"
            )
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
