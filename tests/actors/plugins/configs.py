"""Config fragments the plugin tests share."""

from __future__ import annotations

from typing import Final

ECHO: Final = """
[providers.local]
kind = "echo"
[models]
primary = "local/echo"
"""
"""Every turn answered by the echo provider."""

FLAKY: Final = """
[providers.local]
kind = "echo"
[providers.flaky]
kind = "faulty"
wraps = "local"
schedule = "fail forever with overloaded"
retries = 0
[models]
primary = "flaky/main"
fallbacks = ["local/echo"]
"""
"""A primary that is always overloaded, in front of the echo: every turn fails over once."""
