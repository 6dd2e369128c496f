"""Sessions: one actor per conversation, a durable store, the runner, compaction, commands."""

from actors.sessions.commands import COMMANDS, Command, parse_command
from actors.sessions.compaction import CompactionPlan, plan_compaction
from actors.sessions.manager import SessionManager
from actors.sessions.messages import (
    SessionInfo,
    Turn,
    TurnDelta,
    TurnResult,
    session_actor_name,
    validate_key,
)
from actors.sessions.path_map import PathMap
from actors.sessions.runner import EmbeddedRunner
from actors.sessions.session import SessionActor, SessionDeps
from actors.sessions.store import (
    STORE_NAME,
    FileBackend,
    MaintenanceReport,
    SessionEntry,
    StoreActor,
    StoreBackend,
)
from actors.sessions.transcript import History, history_from, parse_transcript

__all__ = [
    "COMMANDS",
    "STORE_NAME",
    "Command",
    "CompactionPlan",
    "EmbeddedRunner",
    "FileBackend",
    "History",
    "MaintenanceReport",
    "PathMap",
    "SessionActor",
    "SessionDeps",
    "SessionEntry",
    "SessionInfo",
    "SessionManager",
    "StoreActor",
    "StoreBackend",
    "Turn",
    "TurnDelta",
    "TurnResult",
    "history_from",
    "parse_command",
    "parse_transcript",
    "plan_compaction",
    "session_actor_name",
    "validate_key",
]
