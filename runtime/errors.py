"""The runtime's exceptions, one tree.

Every error the runtime raises on purpose is a subclass of `ActorRuntimeError`,
so a caller can catch the whole family or one precise case::

    ActorRuntimeError
    ├── DeliveryError              a message could not be put in a mailbox
    │   └── MailboxFull            the mailbox's overflow policy is `fail` or `drop_newest`
    ├── AskError                   an `ask` got no reply
    │   ├── AskTimeout             the deadline passed first
    │   └── ActorGone              the callee can no longer answer this ask
    │       ├── ActorCrashed       its handler raised on this very message (cause chained)
    │       ├── ActorRestarted     it was restarted while this message was in its hands
    │       └── ActorStopped       it stopped for good, or its mailbox is closed
    ├── RegistryError
    │   ├── ActorNotFound          no actor registered under that name
    │   └── NameTaken              a live actor already holds that name
    ├── SupervisorError
    │   ├── StartFailed            a child raised before it said it was started
    │   ├── RestartIntensityExceeded  more than max_restarts within within_s: escalation
    │   ├── ChildNotFound          no child with that name under this supervisor
    │   ├── DuplicateChild         a child with that name exists already
    │   └── SupervisorNotRunning   the supervisor is stopping or not started yet
    ├── ShuttingDown               new work refused: the system is draining
    ├── InvalidPolicy              a policy or spec value out of range
    └── HookError
        ├── HookVetoed             an interceptor vetoed the event
        └── HookPayloadError       a payload (or an interceptor's replacement) of the wrong type

Messages are built from the offending values, so a log line alone says what
happened to whom.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "ActorGone",
    "ActorNotFound",
    "ActorRestarted",
    "ActorRuntimeError",
    "ActorStopped",
    "AskError",
    "AskTimeout",
    "ChildNotFound",
    "DeliveryError",
    "DuplicateChild",
    "HookError",
    "HookPayloadError",
    "HookVetoed",
    "InvalidPolicy",
    "MailboxFull",
    "NameTaken",
    "RegistryError",
    "RestartIntensityExceeded",
    "ShuttingDown",
    "StartFailed",
    "SupervisorError",
    "SupervisorNotRunning",
]


class ActorRuntimeError(Exception):
    """Base class of every error the runtime raises on purpose."""


class DeliveryError(ActorRuntimeError):
    """A message could not be put in a mailbox."""


class MailboxFull(DeliveryError):
    """The target mailbox is full and its overflow policy refuses to wait."""

    def __init__(self, actor: str, capacity: int, policy: str) -> None:
        super().__init__(
            f"mailbox of {actor!r} is full ({capacity} messages, overflow policy {policy!r})"
        )
        self.actor = actor
        self.capacity = capacity
        self.policy = policy


class AskError(ActorRuntimeError):
    """An `ask` ended without a reply."""


class AskTimeout(AskError):
    """The ask's deadline passed before the callee replied."""

    def __init__(self, actor: str, message_type: str, timeout_s: float) -> None:
        super().__init__(f"ask {message_type} to {actor!r} got no reply within {timeout_s:g} s")
        self.actor = actor
        self.message_type = message_type
        self.timeout_s = timeout_s


class ActorGone(AskError):
    """The callee can no longer answer this ask."""

    def __init__(self, actor: str, message_type: str, detail: str) -> None:
        super().__init__(f"ask {message_type} to {actor!r} failed: {detail}")
        self.actor = actor
        self.message_type = message_type


class ActorCrashed(ActorGone):
    """The callee's handler raised on this message; the original error is `__cause__`."""

    def __init__(self, actor: str, message_type: str, cause: BaseException) -> None:
        super().__init__(actor, message_type, f"handler raised {type(cause).__name__}: {cause}")


class ActorRestarted(ActorGone):
    """The callee was restarted (or killed for a restart) while handling this message."""

    def __init__(self, actor: str, message_type: str) -> None:
        super().__init__(actor, message_type, "the actor was restarted while handling it")


class ActorStopped(ActorGone):
    """The callee stopped for good, or its mailbox is closed."""

    def __init__(self, actor: str, message_type: str) -> None:
        super().__init__(actor, message_type, "the actor is stopped and its mailbox closed")


class RegistryError(ActorRuntimeError):
    """A registry lookup or registration failed."""


class ActorNotFound(RegistryError):
    """No actor is registered under the name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no actor registered as {name!r}")
        self.name = name


class NameTaken(RegistryError):
    """A live actor already holds the name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"an actor is already registered as {name!r}")
        self.name = name


class SupervisorError(ActorRuntimeError):
    """A supervisor could not do what it was asked."""


class StartFailed(SupervisorError):
    """A child raised before it called `task_status.started()`; the cause is chained."""

    def __init__(self, supervisor: str, child: str, cause: BaseException) -> None:
        super().__init__(
            f"{supervisor}: child {child!r} failed to start: {type(cause).__name__}: {cause}"
        )
        self.supervisor = supervisor
        self.child = child


class RestartIntensityExceeded(SupervisorError):
    """More restarts than `max_restarts` within `within_s`: the supervisor gives up.

    The supervisor has stopped all its children when this is raised; its parent
    sees it as the supervisor's own abnormal exit (escalation).
    """

    def __init__(self, supervisor: str, max_restarts: int, within_s: float, last: str) -> None:
        super().__init__(
            f"supervisor {supervisor!r} exceeded its restart intensity "
            f"({max_restarts} restarts within {within_s:g} s); last failure: {last}"
        )
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.within_s = within_s


class ChildNotFound(SupervisorError):
    """No child with that name under the supervisor."""

    def __init__(self, supervisor: str, child: str) -> None:
        super().__init__(f"supervisor {supervisor!r} has no child {child!r}")
        self.supervisor = supervisor
        self.child = child


class DuplicateChild(SupervisorError):
    """A child with that name exists already under the supervisor."""

    def __init__(self, supervisor: str, child: str) -> None:
        super().__init__(f"supervisor {supervisor!r} already has a child {child!r}")
        self.supervisor = supervisor
        self.child = child


class SupervisorNotRunning(SupervisorError):
    """The supervisor is not accepting children (not started, or stopping)."""

    def __init__(self, supervisor: str, state: str) -> None:
        super().__init__(f"supervisor {supervisor!r} is {state}; it accepts no children")
        self.supervisor = supervisor
        self.state = state


class ShuttingDown(ActorRuntimeError):
    """New work is refused because the system is draining."""

    def __init__(self, what: str) -> None:
        super().__init__(f"shutting down: {what} refused")
        self.what = what


class InvalidPolicy(ActorRuntimeError):
    """A policy or spec was built with a value out of its range."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(f"{field}: {value!r} is invalid; expected {expected}")
        self.field = field
        self.value = value


class HookError(ActorRuntimeError):
    """Base of the hook bus's errors."""


class HookVetoed(HookError):
    """An interceptor vetoed the event; `reason` says why."""

    def __init__(self, event: str, handler: str, reason: str) -> None:
        super().__init__(f"{event} vetoed by {handler}: {reason}")
        self.event = event
        self.handler = handler
        self.reason = reason


class HookPayloadError(HookError):
    """A payload, or an interceptor's replacement, is not of the event's payload type."""

    def __init__(self, event: str, expected: str, got: str, where: str) -> None:
        super().__init__(f"{event}: {where} must be {expected}, got {got}")
        self.event = event
