"""The gateway's call events: defined in :mod:`tollgate.core.events`, shared with data."""

from __future__ import annotations

from tollgate.core.events import Observer, Observers, ToolCallEvent

__all__ = ["Observer", "Observers", "ToolCallEvent"]
