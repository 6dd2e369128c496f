"""callboard's daemon: config, the supervision tree, and the CLI, on `runtime`."""

from actors.app import Handles, TreePlan, build_tree, run_daemon
from actors.config import Config, LoadedConfig, load_config, parse_config
from actors.errors import CallboardError, ConfigError

__all__ = [
    "CallboardError",
    "Config",
    "ConfigError",
    "Handles",
    "LoadedConfig",
    "TreePlan",
    "build_tree",
    "load_config",
    "parse_config",
    "run_daemon",
]
