"""The failover supervisor: every model request keeps working when providers fail.

For each `Generate` it builds a chain (the selected model, then its fallbacks)
and walks it in two stages: the auth profiles (keys) of a model's provider,
then the next model. What happens after a failure depends on its class (see
`policy.py`): retries with full-jitter backoff, key cooldowns that survive
restarts (`cooldowns.py`), per-route circuit breakers probed every
`probe_interval_s` (`breaker.py`).

The request has one deadline budget: `total_s` for everything, and per
attempt the provider's `first_token_s` and `idle_s`, each enforced by a trio
cancel scope and reported as a `timeout` (connecting is bounded by the
provider's `connect_s`).

**The commit point.** Until the first piece of answer reaches the caller, any
failure fails over unseen. After it, the next route continues the partial
answer as an assistant prefill where that model accepts one; where it does not
(or refuses it with a 400), the answer is restarted without it, and when the
new answer begins with what was already sent only the rest is streamed; if it
differs, the request ends with an explicit error. A stream never ends cleanly
after partial content unless the answer is complete.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

import trio

from actors.config import Config
from actors.errors import ErrorClass, ModelError
from actors.events import (
    MODEL_FAILOVER,
    MODEL_REQUEST,
    MODEL_RESPONSE,
    MODEL_SELECT,
    ModelFailover,
    ModelRequestSent,
    ModelResponse,
    ModelSelect,
)
from actors.failover.breaker import Admission, Breakers, Route
from actors.failover.classifier import TaskClassifier
from actors.failover.cooldowns import Cooldowns, WallClock
from actors.failover.policy import Next, retry_wait_s, rule_for
from actors.models import (
    AUTO_MODEL,
    Attempt,
    Classification,
    Completed,
    Delta,
    Failed,
    Generate,
    ModelRequest,
    ModelResult,
    ProviderCall,
    ProviderDelta,
    ProviderDone,
    ProviderEvent,
    ProviderFailed,
    StreamEvent,
    split_model,
)
from actors.providers.base import ProviderInfo
from runtime import Actor, ActorRuntimeError, HookVetoed, Message, receive_soon, send_soon

__all__ = [
    "AUTH_STATE_FILE",
    "FailoverActor",
    "FailoverStatus",
    "GetFailoverStatus",
    "Selection",
]

log = logging.getLogger("callboard.failover")

AUTH_STATE_FILE: Final = "auth-state.json"
_EVENT_BUFFER: Final = 64
_DELIVERY_TIMEOUT_S: Final = 5.0
_STICKY_SESSIONS: Final = 100_000
_RETRYABLE_SURFACED: Final = frozenset(
    {
        ErrorClass.RATE_LIMIT,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.NETWORK,
        ErrorClass.TIMEOUT,
        ErrorClass.STREAM_CUT,
        ErrorClass.CONTEXT_OVERFLOW,
    }
)


class GetFailoverStatus(Message):
    """Ask the failover supervisor for its counters, cooldowns and open breakers."""


@dataclass(frozen=True, slots=True)
class FailoverStatus:
    """A snapshot for /metrics and `callboard status`."""

    requests: int
    served: Mapping[str, int]
    failovers: Mapping[str, int]
    failed: Mapping[str, int]
    cooldowns: tuple[dict[str, Any], ...]
    open_breakers: tuple[str, ...]
    probes: int


@dataclass(frozen=True, slots=True)
class Selection:
    """The model chosen for a request, why, and its chain."""

    source: str
    chain: tuple[str, ...]
    classification: Classification | None


class _Mode(Enum):
    FRESH = "fresh"  # nothing sent yet, or continuing with a prefill: forward as it comes
    RESTART = "restart"  # restarted without prefill: hold back until it passes what was sent


class _Diverged(Exception):
    """A restarted answer does not begin with what the caller already has."""


@dataclass
class _Request:
    """One request's progress."""

    request: ModelRequest
    out: trio.MemorySendChannel[StreamEvent]
    deadline: float
    selection: Selection
    sent: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    numbered: int = 0
    last_error: ModelError | None = None


@dataclass
class _AttemptState:
    mode: _Mode
    held: str = ""


class FailoverActor(Actor[Generate | GetFailoverStatus]):
    """Routes `Generate` requests over provider actors with retries and failover.

    Args:
        config: the whole config (models, failover, providers).
        providers: the providers that started.
        skipped: provider id -> why it is not running (for the attempt trail).
        state_dir: where `auth-state.json` lives (None: cooldowns in memory only).
        rng: randomness of retry jitter (seed it in tests).
    """

    background = True
    drain_background = True  # requests in flight finish within the stop budget

    def __init__(
        self,
        config: Config,
        providers: Sequence[ProviderInfo],
        skipped: Mapping[str, str],
        state_dir: Path | None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.failover = config.models.failover
        self.providers = {p.id: p for p in providers}
        self.skipped = dict(skipped)
        self.state_path = None if state_dir is None else state_dir / AUTH_STATE_FILE
        self.rng = rng or random.Random()  # noqa: S311 - jitter
        self.classifier = TaskClassifier()
        self.breakers = Breakers(
            failures=self.failover.breaker_failures,
            probe_interval_s=self.failover.probe_interval_s,
        )
        self.counters: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.failovers: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._sticky: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._last_used: dict[tuple[str, str | None], float] = {}
        self._no_prefill: set[Route] = set()

    async def on_start(self) -> None:
        self.cooldowns = Cooldowns(self.state_path, self.failover, WallClock())
        active = self.cooldowns.load()
        if active:
            log.info("%d key cooldown(s) restored from %s", active, self.state_path)

    async def receive(self, message: Generate | GetFailoverStatus) -> object:
        if isinstance(message, GetFailoverStatus):
            return self.status()
        self.nursery.start_soon(self._serve, message)
        return None

    def status(self) -> FailoverStatus:
        """Counters, active cooldowns and open breakers, now."""
        return FailoverStatus(
            requests=self.counters["requests"],
            served=dict(self.served),
            failovers=dict(self.failovers),
            failed=dict(self.failed),
            cooldowns=tuple(self.cooldowns.to_json()),
            open_breakers=tuple(str(r) for r in self.breakers.open_routes()),
            probes=self.counters["probes"],
        )

    # -- selection ------------------------------------------------------------------

    def _resolve(self, model: str) -> str:
        return self.config.models.aliases.get(model, model)

    def select(self, request: ModelRequest) -> Selection:
        """Which chain serves `request` (before the `model:select` hook).

        The request's model, else the session's pin, else the channel's, else
        the default; `auto` (when nothing more specific is set) asks the
        classifier for a tier.
        """
        models = self.config.models
        source, chosen = "default", models.primary
        wants_auto = False
        for name, value in (
            ("request", request.model),
            ("session", request.session_pin),
            ("channel", request.channel_pin),
        ):
            if value == AUTO_MODEL:
                wants_auto = True  # `auto` is less specific than any named model
            elif value:
                source, chosen = name, value
                break
        else:
            if wants_auto:
                chosen = AUTO_MODEL
        classification: Classification | None = None
        if chosen == AUTO_MODEL:
            classification = self.classifier.classify(request.messages)
            tier = models.tiers.get(classification.label or "") or models.tiers.get("default")
            if tier:
                return Selection("classifier", _dedupe(tier), classification)
            if models.primary == AUTO_MODEL:
                return Selection("classifier", _dedupe(models.fallbacks), classification)
            source, chosen = "default", models.primary
        head = self._resolve(chosen)
        if request.fallbacks is not None:
            rest = tuple(self._resolve(m) for m in request.fallbacks)
        elif head in models.chains:
            rest = models.chains[head]
        else:
            rest = models.fallbacks
        return Selection(source, _dedupe((head, *rest)), classification)

    # -- serving a request --------------------------------------------------------------

    async def _serve(self, generate: Generate) -> None:
        out = generate.events
        async with out:
            with generate.scope:
                try:
                    await self._run(generate.request, out)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.counters["aborted"] += 1  # the caller went away
            if generate.scope.cancelled_caught:
                self.counters["aborted"] += 1

    async def _run(self, request: ModelRequest, out: trio.MemorySendChannel[StreamEvent]) -> None:
        self.counters["requests"] += 1
        selection = self.select(request)
        hooks = self.ctx.services.hooks
        try:
            chosen = await hooks.emit(
                MODEL_SELECT,
                ModelSelect(
                    request.request_id,
                    request.session_key,
                    request.channel,
                    selection.source,
                    selection.chain,
                    selection.classification,
                ),
            )
        except HookVetoed as exc:
            await self._fail(out, ErrorClass.FORMAT, f"model selection vetoed: {exc.reason}", [])
            return
        selection = Selection(selection.source, _dedupe(chosen.chain), selection.classification)
        state = _Request(request, out, trio.current_time() + self.failover.total_s, selection)
        pending = deque(selection.chain)
        while pending:
            model = pending.popleft()
            if "/" not in model:
                state.attempts.append(
                    Attempt(
                        model=model,
                        provider="",
                        profile=None,
                        reason="skipped: unknown model",
                        detail=f"unknown model {model!r}: not '<provider>/<model>' nor an alias",
                    )
                )
                state.last_error = ModelError(
                    ErrorClass.MODEL_NOT_FOUND, f"unknown model {model!r}"
                )
                continue
            served, error = await self._try_model(state, model)
            if served:
                return
            if error is None:
                continue  # nothing tried (skipped): the next model, no failover event
            rule = rule_for(error.kind)
            if _is_final(error) or rule.then is Next.SURFACE:
                break
            if rule.then is Next.LARGER_WINDOW:
                window = self.config.models.windows.get(model)
                larger = [
                    m
                    for m in pending
                    if window is not None and self.config.models.windows.get(m, 0) > window
                ]
                pending = deque(larger)
                if not pending:
                    break
            if await self._vetoed_failover(state, model, error, pending):
                break
        await self._give_up(state)

    async def _vetoed_failover(
        self, state: _Request, model: str, error: ModelError, pending: deque[str]
    ) -> bool:
        """Announce `model:failover`; True if an interceptor vetoed (pending may be redirected)."""
        to_model = pending[0] if pending else None
        self.failovers[error.kind.value] += 1
        try:
            decided = await self.ctx.services.hooks.emit(
                MODEL_FAILOVER,
                ModelFailover(
                    state.request.request_id,
                    state.request.session_key,
                    model,
                    error.kind.value,
                    error.detail,
                    to_model,
                    tuple(state.attempts),
                ),
            )
        except HookVetoed as exc:
            log.info("failover from %s vetoed: %s", model, exc.reason)
            return True
        if decided.to_model != to_model:
            if to_model is not None:
                pending.popleft()
            if decided.to_model is not None:
                pending.appendleft(self._resolve(decided.to_model))
        if pending:
            log.info("failing over from %s (%s) to %s", model, error.kind.value, pending[0])
        return False

    async def _give_up(self, state: _Request) -> None:
        error = state.last_error or ModelError(ErrorClass.SERVER_ERROR, "no model could be tried")
        if all(a.reason.startswith("skipped") for a in state.attempts) and state.attempts:
            detail = "no route available: " + "; ".join(
                f"{a.model}@{a.profile or '-'} {a.reason} ({a.detail})" for a in state.attempts
            )
        else:
            detail = error.detail
        await self._fail(state.out, error.kind, detail, state.attempts, partial=state.sent)

    async def _fail(
        self,
        out: trio.MemorySendChannel[StreamEvent],
        kind: ErrorClass,
        message: str,
        attempts: Sequence[Attempt],
        *,
        partial: str = "",
    ) -> None:
        self.failed[kind.value] += 1
        await out.send(
            Failed(
                kind=kind,
                message=message,
                attempts=tuple(attempts),
                partial=partial,
                retryable=kind in _RETRYABLE_SURFACED,
            )
        )

    # -- one model: its keys ----------------------------------------------------------

    def _profiles(self, info: ProviderInfo, model: str, session: str | None) -> list[str | None]:
        """Keys in the order to try: usable before cooling or broken ones; then the
        session's own key (it stays with the session while healthy); then the least
        recently used."""
        sticky = self._sticky.get(session) if session else None

        def order(profile: str | None) -> tuple[bool, bool, bool, float]:
            return (
                self.cooldowns.blocked(info.id, profile, model) is not None,
                self.breakers.is_open(Route(info.id, model, profile)),
                sticky != (info.id, profile),
                self._last_used.get((info.id, profile), 0.0),
            )

        return sorted(info.profiles, key=order)

    async def _try_model(self, state: _Request, model: str) -> tuple[bool, ModelError | None]:
        """Try every usable key of `model`. Returns (served, the error that ended it)."""
        provider_id, name = split_model(model)
        info = self.providers.get(provider_id)
        if info is None:
            why = self.skipped.get(provider_id, f"provider {provider_id!r} is not running")
            state.attempts.append(
                Attempt(
                    model=model,
                    provider=provider_id,
                    profile=None,
                    reason="skipped: no provider",
                    detail=why,
                )
            )
            state.last_error = state.last_error or ModelError(ErrorClass.MODEL_NOT_FOUND, why)
            return False, None
        error: ModelError | None = None
        for profile in self._profiles(info, name, state.request.session_key):
            route = Route(provider_id, name, profile)
            cooled = self.cooldowns.blocked(provider_id, profile, name)
            if cooled is not None:
                state.attempts.append(
                    Attempt(
                        model=model,
                        provider=provider_id,
                        profile=profile,
                        reason=f"skipped: {cooled.reason} cooldown",
                        detail=f"{cooled.until - self.cooldowns.clock.now():.0f} s left",
                    )
                )
                state.last_error = state.last_error or ModelError(
                    ErrorClass(cooled.reason), f"{model}: key {profile} is cooling down"
                )
                continue
            admission = self.breakers.admit(route, trio.current_time())
            if admission is Admission.SKIP:
                probe_in = self.breakers.next_probe_at(route) - trio.current_time()
                state.attempts.append(
                    Attempt(
                        model=model,
                        provider=provider_id,
                        profile=profile,
                        reason="skipped: breaker open",
                        detail=f"next probe in {probe_in:.0f} s",
                    )
                )
                state.last_error = state.last_error or ModelError(
                    ErrorClass.OVERLOADED, f"{model}: circuit breaker open"
                )
                continue
            if admission is Admission.PROBE:
                self.counters["probes"] += 1
            served, error = await self._try_route(
                state, info, route, probe=admission is Admission.PROBE
            )
            if served:
                return True, None
            assert error is not None
            state.last_error = error
            if _is_final(error) or rule_for(error.kind).then is not Next.NEXT_KEY:
                return False, error
        return False, error

    # -- one route: retries ---------------------------------------------------------------

    async def _try_route(
        self, state: _Request, info: ProviderInfo, route: Route, *, probe: bool
    ) -> tuple[bool, ModelError | None]:
        retries_left = 0 if probe else info.config.retries
        tries = 0
        prefill_retried = False
        while True:
            tries += 1
            error = await self._attempt(state, info, route)
            if error is None:
                self.breakers.succeeded(route)
                return True, None
            if _is_final(error):
                self.breakers.abandoned(route, trio.current_time())
                return False, error
            if error.prefill_rejected and not prefill_retried:
                prefill_retried = True
                self._no_prefill.add(route)  # this model does not continue prefills
                continue
            rule = rule_for(error.kind)
            may_retry = (
                rule.retry
                if error.should_retry is None
                else (error.should_retry and rule.then is not Next.SURFACE)
            )
            if (
                may_retry
                and retries_left > 0
                and not (
                    error.retry_after_s is not None
                    and error.retry_after_s > self.failover.max_retry_wait_s
                )
            ):
                wait = retry_wait_s(
                    error,
                    tries,
                    base_s=self.failover.retry_base_s,
                    max_s=self.failover.retry_max_s,
                    rng=self.rng,
                )
                if trio.current_time() + wait < state.deadline:
                    retries_left -= 1
                    await trio.sleep(wait)
                    continue
            now = trio.current_time()
            if rule.breaker:
                if self.breakers.failed(route, now):
                    log.warning("breaker open for %s after %s", route, error.kind.value)
            elif probe:
                self.breakers.abandoned(route, now)
            if rule.cool_key and route.profile is not None:
                self.cooldowns.cool(
                    route.provider, route.profile, route.model, error.kind, error.retry_after_s
                )
                await self.cooldowns.save()
            return False, error

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(
        self, state: _Request, info: ProviderInfo, route: Route
    ) -> ModelError | None:
        """One call on one route. None when it served the request (its Completed is sent)."""
        request = state.request
        model = f"{route.provider}/{route.model}"
        prefill = (
            state.sent
            if state.sent and info.accepts_prefill and route not in self._no_prefill
            else None
        )
        attempt = _AttemptState(_Mode.RESTART if state.sent and not prefill else _Mode.FRESH)
        send, receive = trio.open_memory_channel[ProviderEvent](_EVENT_BUFFER)
        call = ProviderCall(
            model=route.model,
            messages=request.messages,
            prefill=prefill,
            profile=route.profile,
            stream=request.stream,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            events=send,
        )
        state.numbered += 1
        self.ctx.services.hooks.notify(
            MODEL_REQUEST,
            ModelRequestSent(
                request.request_id,
                request.session_key,
                model,
                route.profile,
                state.numbered,
                len(prefill or ""),
            ),
        )
        began = trio.current_time()
        try:
            outcome = await self._exchange(state, info, call, receive, attempt)
        except _Diverged:
            outcome = _FinalError(
                ErrorClass.STREAM_CUT,
                f"the answer was cut after {len(state.sent)} characters and {model}'s new "
                "answer does not continue it",
            )
        finally:
            call.scope.cancel()
        duration = round(trio.current_time() - began, 4)
        if isinstance(outcome, ProviderDone):
            await self._served(state, route, outcome, duration)
            return None
        state.attempts.append(
            Attempt(
                model=model,
                provider=route.provider,
                profile=route.profile,
                reason=outcome.kind.value,
                status=outcome.status,
                duration_s=duration,
                detail=outcome.detail,
            )
        )
        return outcome

    async def _exchange(
        self,
        state: _Request,
        info: ProviderInfo,
        call: ProviderCall,
        receive: trio.MemoryReceiveChannel[ProviderEvent],
        attempt: _AttemptState,
    ) -> ProviderDone | ModelError:
        """Deliver `call` and follow its events under the first-token, idle and total budgets."""
        model = f"{info.id}/{call.model}"
        try:
            ref = self.ctx.services.registry.lookup(info.actor)
            await ref.ask(call, _DELIVERY_TIMEOUT_S)
        except ActorRuntimeError as exc:
            call.events.close()
            receive.close()
            return ModelError(ErrorClass.NETWORK, f"{info.actor} is not available: {exc}")
        timeouts = info.config.timeouts
        began = trio.current_time()
        got_text = False
        watch = trio.CancelScope(deadline=min(state.deadline, began + timeouts.first_token_s))
        with receive, watch:
            while True:
                try:
                    event = await receive_soon(receive)
                except trio.EndOfChannel:
                    break
                if isinstance(event, ProviderDelta):
                    got_text = True
                    watch.deadline = min(state.deadline, trio.current_time() + timeouts.idle_s)
                    await self._forward(state, attempt, event.text)
                elif isinstance(event, ProviderDone):
                    if attempt.mode is _Mode.RESTART:
                        raise _Diverged  # ended before catching up with what was sent
                    return event
                else:
                    assert isinstance(event, ProviderFailed)
                    return event.error
            return ModelError(ErrorClass.STREAM_CUT, f"{info.actor} ended without a result")
        if trio.current_time() >= state.deadline:
            what = f"the request's total budget of {self.failover.total_s:g} s ran out"
        elif got_text:
            what = f"silent for {timeouts.idle_s:g} s in the middle of the stream (idle_s)"
        else:
            what = f"no first token within {timeouts.first_token_s:g} s (first_token_s)"
        return ModelError(ErrorClass.TIMEOUT, f"{model}: {what}")

    async def _forward(self, state: _Request, attempt: _AttemptState, text: str) -> None:
        if attempt.mode is _Mode.RESTART:
            attempt.held += text
            if len(attempt.held) < len(state.sent):
                if not state.sent.startswith(attempt.held):
                    raise _Diverged
                return
            if not attempt.held.startswith(state.sent):
                raise _Diverged
            text = attempt.held[len(state.sent) :]
            attempt.mode, attempt.held = _Mode.FRESH, ""
            if not text:
                return
        state.sent += text
        await send_soon(state.out, Delta(text=text))

    async def _served(
        self, state: _Request, route: Route, done: ProviderDone, duration: float
    ) -> None:
        model = f"{route.provider}/{route.model}"
        state.attempts.append(
            Attempt(
                model=model,
                provider=route.provider,
                profile=route.profile,
                reason="ok",
                status=200,
                duration_s=round(duration, 4),
            )
        )
        result = ModelResult(
            text=state.sent,
            provider=route.provider,
            model=model,
            attempts=tuple(state.attempts),
            usage=done.usage,
            finish_reason=done.finish_reason,
            source=state.selection.source,
            classification=state.selection.classification,
        )
        session = state.request.session_key
        if session is not None:
            self._sticky[session] = (route.provider, route.profile)
            self._sticky.move_to_end(session)
            if len(self._sticky) > _STICKY_SESSIONS:
                self._sticky.popitem(last=False)
        self._last_used[(route.provider, route.profile)] = trio.current_time()
        self.served[model] += 1
        await send_soon(state.out, Completed(result=result))
        self.ctx.services.hooks.notify(
            MODEL_RESPONSE, ModelResponse(state.request.request_id, session, result)
        )


class _FinalError(ModelError):
    """An error that ends the request where it stands (no further routes)."""


def _is_final(error: ModelError) -> bool:
    return isinstance(error, _FinalError)


def _dedupe(models: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(models))
