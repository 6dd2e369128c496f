"""The failover supervisor: chains, key rotation, cooldowns, breakers, the classifier."""

from actors.failover.breaker import Admission, Breakers, BreakerState, Route
from actors.failover.classifier import LABELS, TaskClassifier, classify
from actors.failover.client import FAILOVER_NAME, ModelsClient
from actors.failover.cooldowns import Cooldown, Cooldowns, WallClock
from actors.failover.policy import POLICY, Next, Rule, rule_for
from actors.failover.supervisor import (
    AUTH_STATE_FILE,
    FailoverActor,
    FailoverStatus,
    GetFailoverStatus,
    Selection,
)

__all__ = [
    "AUTH_STATE_FILE",
    "FAILOVER_NAME",
    "LABELS",
    "POLICY",
    "Admission",
    "BreakerState",
    "Breakers",
    "Cooldown",
    "Cooldowns",
    "FailoverActor",
    "FailoverStatus",
    "GetFailoverStatus",
    "ModelsClient",
    "Next",
    "Route",
    "Rule",
    "Selection",
    "TaskClassifier",
    "WallClock",
    "classify",
    "rule_for",
]
