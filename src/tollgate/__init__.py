"""Tollgate: a self-hosted MCP gateway and control plane."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tollgate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
