"""The daemon's exceptions, one tree (the runtime's own live in `runtime.errors`).

::

    CallboardError
    ├── ConfigError          config.toml is missing, not TOML, or invalid;
    │                        `problems` lists each as "<file>: <key.path>: <message>"
    ├── ChannelStartError    a channel cannot start as configured
    │   ├── GatewayConfigError   exposed beyond loopback without a client token
    │   ├── HttpStartError       the HTTP endpoint cannot listen (a port in use)
    │   └── TelegramSetupError   the Telegram channel (a bad api_base...)
    │       └── TelegramTokenMissing  its bot token variable is not set
    ├── TelegramError        a Bot API call failed (the token never appears)
    ├── GatewayError         a gateway client got an error `res`, or no gateway
    ├── FaultSpecError       a fault schedule (faulty provider, fake provider) does not parse
    ├── InvalidSessionKey    a session key is not `<agent>:<channel>[:<kind>]:<peer>`
    ├── PluginError          plugins could not be loaded; `problems` lists each as
    │                        "plugin <name>: <what went wrong>"
    └── ModelError           one model call failed; `kind` is its `ErrorClass`
        └── ModelCallFailed  the whole request failed after its failover; carries the attempts

Every failure of a provider becomes a `ModelError` of exactly one `ErrorClass`,
translated at the provider's boundary (`actors.providers.classify`).
Messages are built from the offending values, so the line alone says what to
fix and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.models import Attempt

__all__ = [
    "CallboardError",
    "ChannelStartError",
    "ConfigError",
    "ErrorClass",
    "FaultSpecError",
    "GatewayConfigError",
    "GatewayError",
    "HttpStartError",
    "InvalidSessionKey",
    "ModelCallFailed",
    "ModelError",
    "PluginError",
    "TelegramError",
    "TelegramSetupError",
    "TelegramTokenMissing",
]


class CallboardError(Exception):
    """Base class of every error the daemon raises on purpose."""


class ConfigError(CallboardError):
    """The configuration could not be used.

    Attributes:
        path: the config file.
        problems: one line per problem, each naming the file and the key path.
    """

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class PluginError(CallboardError):
    """One or more plugins could not be loaded; nothing starts.

    Attributes:
        problems: one line per problem, each naming the plugin (and, for a
            config key, `hooks.plugin.<name>`).
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class ChannelStartError(CallboardError):
    """A channel cannot start as configured; the message names the key to fix."""


class GatewayConfigError(ChannelStartError):
    """The channels are exposed beyond loopback without a client token."""


class HttpStartError(ChannelStartError):
    """The HTTP endpoint cannot listen (its port is in use, the address is not here)."""


class TelegramSetupError(ChannelStartError):
    """The channel cannot start as configured."""


class TelegramTokenMissing(TelegramSetupError):
    """The bot token variable named by `[channels.telegram] token_env` is not set."""

    def __init__(self, variable: str) -> None:
        super().__init__(
            f"telegram: the bot token variable ${variable} is not set "
            f"([channels.telegram] token_env = {variable!r})"
        )
        self.variable = variable


class TelegramError(CallboardError):
    """A Bot API call failed (the token never appears in the message).

    Attributes:
        method: the Bot API method (`getUpdates`, `sendMessage`...).
        detail: what happened: Telegram's description, or the transport error.
        status: Telegram's `error_code` (else the HTTP status), when there was an answer.
        retry_after_s: a 429's `parameters.retry_after`.
        retryable: whether another attempt may succeed (429, 5xx, timeout, network).
    """

    def __init__(
        self,
        method: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        retryable: bool = False,
    ) -> None:
        where = f" ({status})" if status is not None else ""
        super().__init__(f"Bot API {method}{where}: {detail}")
        self.method = method
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s
        self.retryable = retryable


class GatewayError(CallboardError):
    """The gateway answered with an error, or could not be reached."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class FaultSpecError(CallboardError):
    """A fault schedule could not be parsed; the message quotes the bad part."""

    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(f"fault schedule {spec!r}: {problem}")
        self.spec = spec
        self.problem = problem


class InvalidSessionKey(CallboardError):
    """A session key that does not have the expected form."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(
            f"session key {key!r}: {problem} (expected <agent>:<channel>[:<kind>]:<peer>)"
        )
        self.key = key


class ErrorClass(StrEnum):
    """Every way a model call can fail, as the failover policy sees it."""

    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    NETWORK = "network"
    AUTH = "auth"
    AUTH_PERMANENT = "auth_permanent"
    BILLING = "billing"
    CONTEXT_OVERFLOW = "context_overflow"
    CONTENT_FILTER = "content_filter"
    MODEL_NOT_FOUND = "model_not_found"
    FORMAT = "format"
    STREAM_CUT = "stream_cut"


class ModelError(CallboardError):
    """One model call failed.

    Attributes:
        kind: its class in the taxonomy.
        detail: what happened, in words (never a key).
        status: the HTTP status, when there was one.
        retry_after_s: the provider's `retry-after`/`retry-after-ms`, in seconds.
        should_retry: the provider's `x-should-retry`, when it sent one.
        prefill_rejected: the provider refused an assistant prefill.
    """

    def __init__(
        self,
        kind: ErrorClass,
        detail: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        should_retry: bool | None = None,
        prefill_rejected: bool = False,
    ) -> None:
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{kind.value}{where}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        self.prefill_rejected = prefill_rejected


class ModelCallFailed(ModelError):
    """A request failed after every route its failover allowed.

    Attributes:
        attempts: the attempt trail (model, auth profile id, reason, status, duration).
        partial: text already streamed to the caller before the failure ("" if none).
    """

    def __init__(
        self,
        kind: ErrorClass,
        detail: str,
        attempts: Sequence[Attempt],
        *,
        status: int | None = None,
        partial: str = "",
    ) -> None:
        super().__init__(kind, detail, status=status)
        self.attempts = tuple(attempts)
        self.partial = partial
