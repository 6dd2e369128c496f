"""Model providers: one actor per `[providers.<id>]`, each over a wire-format backend.

Every failure leaves a provider as a classified `ModelError` (see `classify`).
"""

from actors.faults import Fault, FaultName, FaultPlan, parse_fault, parse_schedule
from actors.providers.anthropic import AnthropicBackend
from actors.providers.base import (
    PROVIDER_PREFIX,
    Backend,
    Emit,
    ProviderActor,
    ProviderInfo,
    provider_name,
)
from actors.providers.catalog import ProviderPlan, make_backend, plan_providers, provider_spec
from actors.providers.classify import classify_http, classify_stream_error, classify_transport
from actors.providers.echo import EchoBackend, echo_answer
from actors.providers.fake_server import DEFAULT_ANSWER, FakeConfig, FakeProvider, run_fake_provider
from actors.providers.faulty import FaultyBackend
from actors.providers.openai import OpenAIBackend

__all__ = [
    "DEFAULT_ANSWER",
    "PROVIDER_PREFIX",
    "AnthropicBackend",
    "Backend",
    "EchoBackend",
    "Emit",
    "FakeConfig",
    "FakeProvider",
    "Fault",
    "FaultName",
    "FaultPlan",
    "FaultyBackend",
    "OpenAIBackend",
    "ProviderActor",
    "ProviderInfo",
    "ProviderPlan",
    "classify_http",
    "classify_stream_error",
    "classify_transport",
    "echo_answer",
    "make_backend",
    "parse_fault",
    "parse_schedule",
    "plan_providers",
    "provider_name",
    "provider_spec",
    "run_fake_provider",
]
