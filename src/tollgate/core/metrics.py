"""Prometheus metrics of this process, named ``tollgate_*`` (no per-user labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
"""Tollgate's own registry: ``/metrics`` shows exactly these series."""

TOOL_CALLS = Counter(
    "tollgate_tool_calls",
    "Tool calls through /mcp, by upstream, tool and outcome",
    ["upstream", "tool", "outcome"],
    registry=REGISTRY,
)
TOOL_CALL_ERRORS = Counter(
    "tollgate_tool_call_errors",
    "Failed tool calls, by upstream, tool and kind (tool, backend or cancelled)",
    ["upstream", "tool", "kind"],
    registry=REGISTRY,
)
TOOL_CALL_SECONDS = Histogram(
    "tollgate_tool_call_duration_seconds",
    "Tool call latency through the gateway, by upstream and tool",
    ["upstream", "tool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CREDITS_CHARGED = Counter(
    "tollgate_credits_charged", "Credits charged for tool calls", registry=REGISTRY
)
LEASES = Counter(
    "tollgate_leases", "Credential lease operations, by operation", ["operation"], registry=REGISTRY
)
EVENTS_INGESTED = Counter(
    "tollgate_analytics_records_ingested",
    "Analytics records stored, by kind",
    ["kind"],
    registry=REGISTRY,
)
