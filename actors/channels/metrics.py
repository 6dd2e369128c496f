"""`GET /metrics`: the daemon's state in the Prometheus text format (version 0.0.4).

Everything here is a pure function of values read elsewhere: the HTTP endpoint
gathers a `MetricsSnapshot` (the failover supervisor's counters, the live
supervision tree, the in-flight tracker, the gateway's run counters, dead
letters, hook statistics) and `render` turns it into text. Every family is
always present with its `# HELP` and `# TYPE` lines, even without samples, so
a scrape describes the same set of metrics from the first request on.

The families::

    callboard_requests_total                       counter  model requests (failover supervisor)
    callboard_http_requests_total{route,status}    counter  HTTP requests answered
    callboard_failovers_total{reason}              counter  moves to another model, by error class
    callboard_served_total{model}                  counter  requests answered, by serving model
    callboard_failed_total{reason}                 counter  requests failed after failover
    callboard_breaker_probes_total                 counter  requests that probed an open breaker
    callboard_active_cooldowns                     gauge    key cooldowns in force
    callboard_open_breakers                        gauge    routes whose breaker is open
    callboard_restarts_total                       counter  restarts, summed over the tree
    callboard_child_restarts{path}                 gauge    restarts of each node of the tree
    callboard_mailbox_depth{path}                  gauge    messages waiting, per actor
    callboard_in_flight{kind}                      gauge    requests in flight, by channel
    callboard_in_flight_all                        gauge    requests in flight, all channels
    callboard_runs_total{state}                    counter  channel runs ended, by state
    callboard_dead_letters_total{reason}           counter  dropped or undeliverable messages
    callboard_hook_events_total{kind}              counter  hook bus statistics
    callboard_sessions_active                      gauge    session actors running

`path` is the node's names from the root, joined by '/' (`root/models/failover`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from actors.errors import ErrorClass
from actors.failover.supervisor import FailoverStatus
from runtime import DeadLetterReason, NodeSnapshot

__all__ = [
    "CONTENT_TYPE",
    "Family",
    "MetricsSnapshot",
    "Sample",
    "escape_help",
    "escape_label_value",
    "families",
    "format_value",
    "render",
    "render_families",
    "tree_nodes",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the text exposition format."""

PREFIX: Final = "callboard_"

CHANNEL_KINDS: Final = ("http", "telegram", "websocket")
"""In-flight kinds always reported (at 0 when idle), so their series never vanish."""

RUN_STATES: Final = ("final", "error", "aborted")
"""Run end states always reported, from the gateway's `runs_<state>` counters."""

HOOK_STATS: Final = (
    "observed",
    "observer_errors",
    "observer_timeouts",
    "interceptor_errors",
    "interceptor_timeouts",
    "vetoes",
    "dropped",
)
"""The hook bus's statistics (`HookBus.stats()` keys), always reported."""

MetricType = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a family, with its labels (name -> value, in output order)."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family: its name, type, help text and samples."""

    name: str
    type: MetricType
    help: str
    samples: tuple[Sample, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What /metrics reports, read at one moment.

    Attributes:
        http_requests: (route, status) -> HTTP requests answered.
        failover: the failover supervisor's status (None: it did not answer).
        tree: the live supervision tree (None before the root started).
        in_flight: requests in flight by kind (`InflightTracker.by_kind()`).
        runs: the gateway's counters (`runs`, `runs_final`, `runs_error`, ...).
        dead_letters: dead letters by reason.
        hook_events: the hook bus's statistics.
        sessions_active: session actors running now.
    """

    http_requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    failover: FailoverStatus | None = None
    tree: NodeSnapshot | None = None
    in_flight: Mapping[str, int] = field(default_factory=dict)
    runs: Mapping[str, int] = field(default_factory=dict)
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    hook_events: Mapping[str, int] = field(default_factory=dict)
    sessions_active: int = 0


# -- the text format ------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    r"""A label value as the format wants it: `\` -> `\\`, `"` -> `\"`, newline -> `\n`."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    r"""A HELP docstring as the format wants it: `\` -> `\\`, newline -> `\n`."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, `NaN`, `+Inf` and `-Inf` spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _sample_line(name: str, sample: Sample) -> str:
    if not sample.labels:
        return f"{name} {format_value(sample.value)}"
    labels = ",".join(f'{key}="{escape_label_value(val)}"' for key, val in sample.labels)
    return f"{name}{{{labels}}} {format_value(sample.value)}"


def render_families(items: Iterable[Family]) -> str:
    """The exposition text of `items`: HELP, TYPE, then one line per sample."""
    lines: list[str] = []
    for family in items:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines.extend(_sample_line(family.name, sample) for sample in family.samples)
    return "\n".join(lines) + "\n"


# -- from the daemon's state to families -----------------------------------------------------


def tree_nodes(tree: NodeSnapshot, parent: str = "") -> Iterator[tuple[str, NodeSnapshot]]:
    """Every node of `tree` with its path (names from the root joined by '/'), root first."""
    path = f"{parent}/{tree.name}" if parent else tree.name
    yield path, tree
    for child in tree.children:
        yield from tree_nodes(child, path)


def _labelled(
    label: str, values: Mapping[str, int], always: Iterable[str] = ()
) -> tuple[Sample, ...]:
    merged = dict.fromkeys(always, 0)
    merged.update(values)
    return tuple(Sample(((label, key),), float(merged[key])) for key in sorted(merged))


def _one(value: float | None) -> tuple[Sample, ...]:
    return () if value is None else (Sample((), float(value)),)


def families(snapshot: MetricsSnapshot) -> list[Family]:
    """The metric families of `snapshot`, in a fixed order."""
    status = snapshot.failover
    error_classes = [kind.value for kind in ErrorClass]
    nodes = list(tree_nodes(snapshot.tree)) if snapshot.tree is not None else []
    children = nodes[1:]  # the root itself is never restarted
    runs = {
        key.removeprefix("runs_"): n for key, n in snapshot.runs.items() if key.startswith("runs_")
    }
    http = tuple(
        Sample((("route", route), ("status", code)), float(n))
        for (route, code), n in sorted(snapshot.http_requests.items())
    )
    return [
        Family(
            f"{PREFIX}requests_total",
            "counter",
            "Model requests received by the failover supervisor.",
            _one(status.requests if status else None),
        ),
        Family(
            f"{PREFIX}http_requests_total",
            "counter",
            "HTTP requests answered, by route and status code.",
            http,
        ),
        Family(
            f"{PREFIX}failovers_total",
            "counter",
            "Moves of a request to another model, by the error class that caused them.",
            _labelled("reason", status.failovers if status else {}, error_classes),
        ),
        Family(
            f"{PREFIX}served_total",
            "counter",
            "Model requests answered, by the model that served them.",
            _labelled("model", status.served if status else {}),
        ),
        Family(
            f"{PREFIX}failed_total",
            "counter",
            "Model requests that failed after every route, by error class.",
            _labelled("reason", status.failed if status else {}, error_classes),
        ),
        Family(
            f"{PREFIX}breaker_probes_total",
            "counter",
            "Requests let through an open circuit breaker to probe its route.",
            _one(status.probes if status else None),
        ),
        Family(
            f"{PREFIX}active_cooldowns",
            "gauge",
            "Auth profile (key) cooldowns in force.",
            _one(len(status.cooldowns) if status else None),
        ),
        Family(
            f"{PREFIX}open_breakers",
            "gauge",
            "Routes (provider, model, key) whose circuit breaker is open.",
            _one(len(status.open_breakers) if status else None),
        ),
        Family(
            f"{PREFIX}restarts_total",
            "counter",
            "Restarts of children, summed over the supervision tree.",
            _one(sum(node.restarts for _, node in nodes) if nodes else None),
        ),
        Family(
            f"{PREFIX}child_restarts",
            "gauge",
            "Restarts of each node of the supervision tree, by path.",
            tuple(Sample((("path", path),), float(node.restarts)) for path, node in children),
        ),
        Family(
            f"{PREFIX}mailbox_depth",
            "gauge",
            "Messages waiting in each actor's mailbox, by path.",
            tuple(
                Sample((("path", path),), float(node.mailbox_depth))
                for path, node in nodes
                if node.mailbox_depth is not None
            ),
        ),
        Family(
            f"{PREFIX}in_flight",
            "gauge",
            "Requests in flight, by kind (channel).",
            _labelled("kind", snapshot.in_flight, CHANNEL_KINDS),
        ),
        Family(
            f"{PREFIX}in_flight_all",
            "gauge",
            "Requests in flight, all kinds together.",
            _one(sum(snapshot.in_flight.values())),
        ),
        Family(
            f"{PREFIX}runs_total",
            "counter",
            "Channel runs (user messages answered) that ended, by state.",
            _labelled("state", runs, RUN_STATES),
        ),
        Family(
            f"{PREFIX}dead_letters_total",
            "counter",
            "Messages dropped or not delivered, by reason.",
            _labelled(
                "reason", snapshot.dead_letters, (reason.value for reason in DeadLetterReason)
            ),
        ),
        Family(
            f"{PREFIX}hook_events_total",
            "counter",
            "Hook bus statistics: observers run, errors, timeouts, vetoes, drops.",
            _labelled("kind", snapshot.hook_events, HOOK_STATS),
        ),
        Family(
            f"{PREFIX}sessions_active",
            "gauge",
            "Session actors running now.",
            _one(snapshot.sessions_active),
        ),
    ]


def render(snapshot: MetricsSnapshot) -> str:
    """The whole /metrics body for `snapshot`."""
    return render_families(families(snapshot))
