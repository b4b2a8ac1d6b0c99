"""The one credit path of every metered call (the gateway's tool calls and the data
WebSocket's reads): credits reserved in memory from the process's holds, the ended call
recorded and charged by the settler before its answer is released (or, with
``TOLLGATE_SETTLE_BEFORE_ANSWER=false``, just after: see the README's "Crash recovery")."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tollgate.accounts.calls import CallOutcome, CallRecord
from tollgate.accounts.holds import CreditHolds
from tollgate.accounts.settlement import Settler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """A call whose credits are reserved: what the settler needs to record it."""

    request_id: str
    account_id: int
    tool_name: str
    upstream: str | None
    cost: int


class CallMeter:
    """Reserves and settles calls for one process (``instance_id`` names its holds).

    ``wait_for_record``: settle returns once the call's record and charge are committed (the
    default); when False it returns at once and the record follows in the next group commit.
    """

    def __init__(
        self, holds: CreditHolds, settler: Settler, *, wait_for_record: bool = True
    ) -> None:
        self.holds = holds
        self.settler = settler
        self.wait_for_record = wait_for_record
        self._open: dict[str, Reservation] = {}
        self._recording: set[asyncio.Task[bool]] = set()

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
        failure, or cancelled); True once durable (or at once, queued, when not waiting for
        records). Nothing is charged when it is not."""
        return await self.settle_outcome(
            CallOutcome(
                request_id=request_id,
                success=success,
                is_backend_error=is_backend_error,
                error_code=error_code,
                latency_ms=latency_ms,
                cancelled=cancelled,
            )
        )

    def release(self, request_id: str) -> None:
        """Give a reserved call's credits back without a record (it did not happen as a
        call: it asked the caller for input, and the caller's retry is the call)."""
        reservation = self._open.pop(request_id)
        self.holds.settled(reservation.account_id, reservation.cost, charged=False)

    async def settle_outcome(self, outcome: CallOutcome) -> bool:
        """:meth:`settle` for an outcome already built."""
        reservation = self._open.pop(outcome.request_id)
        record = CallRecord(
            request_id=outcome.request_id,
            account_id=reservation.account_id,
            tool_name=reservation.tool_name,
            upstream=reservation.upstream,
            cost=reservation.cost,
            instance_id=self.holds.instance_id,
            outcome=outcome,
        )
        if not self.wait_for_record and not outcome.cancelled:
            task = asyncio.create_task(self._record(record))
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)
            return True
        return await self._record(record)

    async def _record(self, record: CallRecord) -> bool:
        durable = await self.settler.settle(record)
        self.holds.settled(record.account_id, record.cost, charged=durable and record.charged > 0)
        if not durable and not self.wait_for_record:
            logger.error("call %s was answered but not recorded (not charged)", record.request_id)
        return durable

    async def drain(self) -> None:
        """Wait until every call settled without waiting is recorded (before holds stop)."""
        while self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
