"""Key cooldowns: ladders, never shortened, persisted and restored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from actors.config import FailoverConfig
from actors.errors import ErrorClass
from actors.failover.cooldowns import Cooldowns, WallClock

CONFIG = FailoverConfig()


def store(path: Path | None) -> Cooldowns:
    return Cooldowns(path, CONFIG, WallClock())


async def test_rate_limit_ladder_and_retry_after(autojump_clock: MockClock) -> None:
    cooldowns = store(None)
    first = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT)
    now = cooldowns.clock.now()
    assert first.until - now == pytest.approx(30)
    assert cooldowns.blocked("p", "K", "m") is not None
    assert cooldowns.blocked("p", "K", "other-model") is None  # rate limits are per model
    await trio.sleep(31)
    assert cooldowns.blocked("p", "K", "m") is None
    second = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT)
    assert second.until - cooldowns.clock.now() == pytest.approx(60)
    await trio.sleep(61)
    third = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT, retry_after_s=900)
    assert third.until - cooldowns.clock.now() == pytest.approx(900)  # max(retry-after, 5 min)


async def test_a_later_shorter_signal_never_shortens(autojump_clock: MockClock) -> None:
    cooldowns = store(None)
    long = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT, retry_after_s=600)
    short = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT, retry_after_s=1)
    assert short.until == long.until


async def test_billing_and_auth_disable_the_whole_key(autojump_clock: MockClock) -> None:
    cooldowns = store(None)
    billing = cooldowns.cool("p", "K", "m", ErrorClass.BILLING)
    assert billing.model is None
    assert billing.until - cooldowns.clock.now() == pytest.approx(5 * 3600)
    assert cooldowns.blocked("p", "K", "any-model") is not None
    await trio.sleep(5 * 3600 + 1)
    again = cooldowns.cool("p", "K", "m", ErrorClass.BILLING)
    assert again.until - cooldowns.clock.now() == pytest.approx(10 * 3600)  # doubling
    permanent = cooldowns.cool("p", "J", "m", ErrorClass.AUTH_PERMANENT)
    assert permanent.until - cooldowns.clock.now() == pytest.approx(86_400)
    with pytest.raises(ValueError, match="not a key-level fault"):
        cooldowns.cool("p", "K", "m", ErrorClass.SERVER_ERROR)


async def test_a_clean_period_restarts_the_ladder(autojump_clock: MockClock) -> None:
    cooldowns = store(None)
    first = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT)
    back = first.until - cooldowns.clock.now()  # back in rotation after this
    await trio.sleep(back + CONFIG.clean_period_s - 10)
    assert cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT).step == 1  # not clean long enough
    second = cooldowns.active()[0]
    await trio.sleep(second.until - cooldowns.clock.now() + CONFIG.clean_period_s + 1)
    fresh = cooldowns.cool("p", "K", "m", ErrorClass.RATE_LIMIT)
    assert fresh.step == 0


async def test_cooldowns_survive_a_restart(autojump_clock: MockClock, tmp_path: Path) -> None:
    path = tmp_path / "auth-state.json"
    before = store(path)
    before.cool("p", "K", "m", ErrorClass.BILLING)
    before.cool("p", "J", "m", ErrorClass.RATE_LIMIT)
    await before.save()
    on_disk = json.loads(path.read_text())
    assert on_disk["version"] == 1 and len(on_disk["cooldowns"]) == 2
    after = store(path)
    assert after.load() == 2
    assert after.blocked("p", "K", "m") is not None
    assert after.blocked("p", "J", "m") is not None
    assert {c.reason for c in after.active()} == {"billing", "rate_limit"}
    # The ladder position survives too: the next billing fault doubles.
    again = after.cool("p", "K", "m", ErrorClass.BILLING)
    assert again.step == 1


async def test_an_unreadable_state_file_is_set_aside(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "auth-state.json"
    path.write_text("{not json")
    cooldowns = store(path)
    assert cooldowns.load() == 0
    assert (tmp_path / "auth-state.json.corrupt").read_text() == "{not json"
    assert not path.exists()
