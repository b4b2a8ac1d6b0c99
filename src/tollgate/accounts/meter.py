"""Charging calls made outside the gateway's tool path (the data WebSocket's reads) through
the same credit path: a reservation in a short transaction, the outcome through the settler."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts import calls
from tollgate.accounts.settlement import Settler
from tollgate.core.database import transaction


class CallMeter:
    """Reserves and settles calls for one process (``instance_id`` names it for recovery)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settler: Settler, instance_id: str
    ) -> None:
        self.sessions = sessions
        self.settler = settler
        self.instance_id = instance_id

    async def reserve(
        self, account_id: int, *, request_id: str, tool_name: str, upstream: str, cost: int
    ) -> None:
        """Charge the call and record it pending, committed; the credit path's error when the
        account cannot pay."""
        async with transaction(self.sessions) as session:
            await calls.reserve_call(
                session,
                account_id,
                request_id=request_id,
                tool_name=tool_name,
                upstream=upstream,
                cost=cost,
                instance_id=self.instance_id,
            )

    async def settle(
        self,
        request_id: str,
        *,
        success: bool,
        is_backend_error: bool,
        error_code: str | None,
        latency_ms: float,
        cancelled: bool,
    ) -> bool:
        """Commit the call's outcome through the settler; True once it is durable."""
        outcome = calls.CallOutcome(
            request_id=request_id,
            success=success,
            is_backend_error=is_backend_error,
            error_code=error_code,
            latency_ms=latency_ms,
            cancelled=cancelled,
        )
        return await self.settler.settle(outcome)
