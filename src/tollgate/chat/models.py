"""LLM providers (where models are served, with the API key sealed) and their models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow
from tollgate.core.encrypted import Envelope

PROVIDER_KINDS = ("openai", "anthropic")
"""``openai``: any OpenAI-compatible Chat Completions server (OpenAI, Ollama, vLLM,
llama.cpp, LM Studio); ``anthropic``: Anthropic's Messages API."""


class LlmProvider(Base):
    """A place models are served from."""

    __tablename__ = "llm_providers"
    __table_args__ = (CheckConstraint("kind IN ('openai', 'anthropic')", name="kind_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str | None] = mapped_column(String(2000))
    api_key_envelope: Mapped[str | None] = mapped_column(Envelope(4000))
    timeout_seconds: Mapped[float] = mapped_column(Float, default=60.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )


class LlmModel(Base):
    """A model of a provider, with what it can do and what it costs."""

    __tablename__ = "llm_models"
    __table_args__ = (
        UniqueConstraint("provider_id", "model_id"),
        CheckConstraint(
            "input_price_per_million >= 0 AND output_price_per_million >= 0",
            name="prices_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("llm_providers.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    supports_streaming: Mapped[bool] = mapped_column(Boolean, default=True)
    supports_function_calling: Mapped[bool] = mapped_column(Boolean, default=True)
    supports_vision: Mapped[bool] = mapped_column(Boolean, default=False)
    input_price_per_million: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=0)
    output_price_per_million: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
