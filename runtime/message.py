"""The base class of every message actors exchange.

Messages are frozen pydantic models: they are validated when built at a trust
boundary (a frame, a config file, a provider's answer) and then passed by
reference from actor to actor without being validated again.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Message"]


class Message(BaseModel):
    """A typed, immutable message.

    Subclass it and declare fields::

        class Ping(Message):
            n: int

    Instances are hashable and cannot be changed after construction; unknown
    fields are rejected so a misspelt field fails where it is written.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
