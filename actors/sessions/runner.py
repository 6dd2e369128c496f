"""The embedded runner: from a session's history and a new message to an answer.

The request is the system prompt, the latest compaction summary (as a second
system message), the recent turns (at most `agent.history_turns`, all after
the summary) and the new user message. The answer streams through the
failover supervisor; each piece goes to the caller as it arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from actors.config import AgentConfig
from actors.errors import ModelCallFailed
from actors.failover.client import ModelsClient
from actors.models import ChatMessage, Completed, Delta, Failed, ModelRequest, ModelResult
from actors.sessions.transcript import History

__all__ = ["SUMMARY_INTRO", "EmbeddedRunner"]

SUMMARY_INTRO = "Summary of the earlier conversation:\n"

OnDelta = Callable[[str], Awaitable[None]]


class EmbeddedRunner:
    """Builds model requests for a session and streams their answers.

    Args:
        agent: the system prompt and how many turns to send.
        models: the way to the failover supervisor.
    """

    def __init__(self, agent: AgentConfig, models: ModelsClient) -> None:
        self.agent = agent
        self.models = models

    def build_request(
        self,
        history: History,
        text: str,
        *,
        session_key: str,
        session_pin: str | None,
        channel: str | None,
        channel_pin: str | None,
    ) -> ModelRequest:
        """The request for one turn."""
        messages = [ChatMessage(role="system", content=self.agent.system_prompt)]
        if history.summary:
            messages.append(ChatMessage(role="system", content=SUMMARY_INTRO + history.summary))
        for turn in history.since_summary()[-self.agent.history_turns :]:
            messages.extend(turn.messages())
        messages.append(ChatMessage(role="user", content=text))
        return ModelRequest(
            messages=tuple(messages),
            session_key=session_key,
            session_pin=session_pin,
            channel=channel,
            channel_pin=channel_pin,
        )

    async def answer(self, request: ModelRequest, on_delta: OnDelta) -> ModelResult:
        """Stream the answer to `on_delta`.

        Raises:
            ModelCallFailed: every route failed; `partial` is what was streamed.
        """
        async with self.models.stream(request) as events:
            async for event in events:
                if isinstance(event, Delta):
                    await on_delta(event.text)
                elif isinstance(event, Completed):
                    return event.result
                elif isinstance(event, Failed):
                    raise ModelCallFailed(
                        event.kind, event.message, event.attempts, partial=event.partial
                    )
        raise AssertionError("a model stream always ends with Completed or Failed")
