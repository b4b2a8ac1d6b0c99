"""Tollgate's own OAuth 2.1 authorization server (MCP authorization, 2025-11-25 and
2026-07-28): metadata, client registration (dynamic, metadata documents, pre-registered),
authorization code with PKCE, tokens bound to a resource, refresh rotation, revocation."""
