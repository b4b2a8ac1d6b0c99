"""The one credit path of every metered call (the gateway's tool calls and the data
WebSocket's reads): credits reserved in memory from the process's holds, the ended call
recorded and charged by the settler before its answer is released."""

from __future__ import annotations

from dataclasses import dataclass

from tollgate.accounts.calls import CallOutcome, CallRecord
from tollgate.accounts.holds import CreditHolds
from tollgate.accounts.settlement import Settler


@dataclass(frozen=True)
class Reservation:
    """A call whose credits are reserved: what the settler needs to record it."""

    request_id: str
    account_id: int
    tool_name: str
    upstream: str | None
    cost: int


class CallMeter:
    """Reserves and settles calls for one process (``instance_id`` names its holds)."""

    def __init__(self, holds: CreditHolds, settler: Settler) -> None:
        self.holds = holds
        self.settler = settler
        self._open: dict[str, Reservation] = {}

    async def reserve(
        self, account_id: int, *, request_id: str, tool_name: str, upstream: str | None, cost: int
    ) -> Reservation:
        """Reserve the call's credits; the credit path's error when the account cannot pay
        (InsufficientCredits, Forbidden for a disabled account, NotFound)."""
        await self.holds.take(account_id, cost)
        reservation = Reservation(request_id, account_id, tool_name, upstream, cost)
        self._open[request_id] = reservation
        return reservation

    async def settle(
        self,
        request_id: str,
        *,
        success: bool,
        is_backend_error: bool = False,
        error_code: str | None = None,
        latency_ms: float | None = None,
        cancelled: bool = False,
    ) -> bool:
        """Record the reserved call's outcome and charge it unless refunded (a backend
        failure, or cancelled); True once durable. Nothing is charged when it is not."""
        reservation = self._open.pop(request_id)
        outcome = CallOutcome(
            request_id=request_id,
            success=success,
            is_backend_error=is_backend_error,
            error_code=error_code,
            latency_ms=latency_ms,
            cancelled=cancelled,
        )
        record = CallRecord(
            request_id=request_id,
            account_id=reservation.account_id,
            tool_name=reservation.tool_name,
            upstream=reservation.upstream,
            cost=reservation.cost,
            instance_id=self.holds.instance_id,
            outcome=outcome,
        )
        durable = await self.settler.settle(record)
        self.holds.settled(
            reservation.account_id, reservation.cost, charged=durable and record.charged > 0
        )
        return durable
