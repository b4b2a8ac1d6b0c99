"""Tool names as clients see them: ``<upstream>__<tool>`` (the gateway's and data's)."""

from __future__ import annotations

SEPARATOR = "__"
"""Between the upstream's name and the tool's: only characters every LLM vendor accepts."""


def exposed(upstream: str, name: str) -> str:
    """The gateway's name for an upstream's tool or prompt."""
    return f"{upstream}{SEPARATOR}{name}"
