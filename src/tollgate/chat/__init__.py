"""The LLM chat over Tollgate's own tools (seed 003): providers and models, chat sessions,
the ``/llmchat`` routes."""
