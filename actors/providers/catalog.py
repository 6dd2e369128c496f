"""Which providers start, with which keys, and how each is built.

A provider whose key variables are all unset is skipped with one clear line
(and so is a `faulty` provider wrapping it); one with some keys set runs on
those. Keys are read from the environment once, at start.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.config import (
    AnthropicProviderConfig,
    EchoProviderConfig,
    FaultyProviderConfig,
    OpenAIProviderConfig,
    ProviderConfig,
)
from actors.providers.anthropic import AnthropicBackend
from actors.providers.base import PROVIDER_MAILBOX, Backend, ProviderActor, ProviderInfo
from actors.providers.echo import EchoBackend
from actors.providers.faulty import FaultyBackend
from actors.providers.openai import OpenAIBackend
from runtime import ChildSpec, Registry, actor_spec

__all__ = ["ProviderPlan", "key_profiles", "make_backend", "plan_providers", "provider_spec"]


def key_profiles(
    config: ProviderConfig, env: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """(profile id -> key for the variables that are set, names of those unset)."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in config.key_envs:
        value = env.get(name, "").strip()
        if value:
            found[name] = value
        else:
            missing.append(name)
    return found, missing


def _accepts_prefill(config: ProviderConfig, providers: Mapping[str, ProviderConfig]) -> bool:
    if config.prefill is not None:
        return config.prefill
    if isinstance(config, FaultyProviderConfig):
        target = providers.get(config.wraps)
        return target is not None and _accepts_prefill(target, providers)
    return isinstance(config, AnthropicProviderConfig | EchoProviderConfig)


class ProviderPlan:
    """The providers that start, the lines about those that do not, and their keys."""

    def __init__(self, providers: Mapping[str, ProviderConfig], env: Mapping[str, str]) -> None:
        self.started: list[ProviderInfo] = []
        self.notes: list[str] = []
        self._keys: dict[str, dict[str, str]] = {}
        skipped: set[str] = set()
        for pid, config in providers.items():
            if isinstance(config, FaultyProviderConfig):
                continue
            found, missing = key_profiles(config, env)
            if config.key_envs and not found:
                self.notes.append(f"provider {pid} skipped: {' or '.join(missing)} is not set")
                skipped.add(pid)
                continue
            if missing:
                self.notes.append(
                    f"provider {pid}: {', '.join(missing)} not set; using {', '.join(found)}"
                )
            self._keys[pid] = found
            profiles: tuple[str | None, ...] = tuple(found) if found else (None,)
            self.started.append(
                ProviderInfo(pid, config, profiles, _accepts_prefill(config, providers))
            )
        for pid, config in providers.items():
            if not isinstance(config, FaultyProviderConfig):
                continue
            if config.wraps in skipped:
                self.notes.append(
                    f"provider {pid} skipped: it wraps {config.wraps}, which is skipped"
                )
                skipped.add(pid)
                continue
            self.started.append(
                ProviderInfo(pid, config, (None,), _accepts_prefill(config, providers))
            )
        self.skipped = frozenset(skipped)

    def keys(self, provider_id: str) -> dict[str, str]:
        """The keys of a started provider, by profile id."""
        return dict(self._keys.get(provider_id, {}))


def plan_providers(providers: Mapping[str, ProviderConfig], env: Mapping[str, str]) -> ProviderPlan:
    """Decide which providers start."""
    return ProviderPlan(providers, env)


def make_backend(info: ProviderInfo, keys: Mapping[str, str], registry: Registry) -> Backend:
    """The backend of a provider's kind."""
    config = info.config
    if isinstance(config, OpenAIProviderConfig):
        return OpenAIBackend(info.id, config, keys)
    if isinstance(config, AnthropicProviderConfig):
        return AnthropicBackend(info.id, config, keys)
    if isinstance(config, EchoProviderConfig):
        return EchoBackend(config)
    return FaultyBackend(info.id, config, registry)


def provider_spec(info: ProviderInfo, keys: Mapping[str, str], *, shutdown_s: float) -> ChildSpec:
    """The child spec of one provider actor."""
    keys = dict(keys)

    def factory() -> ProviderActor:
        actor = ProviderActor(
            info.id, lambda: make_backend(info, keys, actor.ctx.services.registry)
        )
        return actor

    return actor_spec(
        info.actor, factory, mailbox=PROVIDER_MAILBOX, shutdown_s=shutdown_s, register=True
    )
