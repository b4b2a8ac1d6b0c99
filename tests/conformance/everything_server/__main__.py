"""CLI entry point for the MCP Everything Server."""

from . import diagnostics  # noqa: F401  (Tollgate's addition: registers the diagnostic tools)
from .server import main

if __name__ == "__main__":
    main()
