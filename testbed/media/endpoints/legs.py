"""The batch half every endpoint kind shares: one leg object per call, each batch request run per leg,
so one leg that fails answers ``{"error": ...}`` without failing the others (``base.Endpoint``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from testbed.media.endpoints.base import Description, LegSpec


class Leg(Protocol):
    """One side of one call, whatever serves it."""

    async def offer(self) -> Description: ...

    async def answer(self, remote: Description) -> Description: ...

    async def accept(self, remote: Description) -> None: ...

    async def stop_media(self) -> float | None:
        """Stop sending; when it stopped (epoch s)."""
        ...

    async def quiet_for(self) -> float | None:
        """Seconds since the last RTP packet arrived (None: none yet): the drain watches it."""
        ...

    def sent_packets(self) -> int | None:
        """RTP packets this side sent (final once its media stopped); None where the kind cannot count
        them (a browser): the drain then waits for quiet instead."""
        ...

    def received_packets(self) -> int | None:
        """Distinct RTP packets this side received (by sequence number); None where it cannot count."""
        ...

    def last_sent_seq(self) -> int | None:
        """The sequence number of the last packet this side sent (None: unknown)."""
        ...

    def last_received_seq(self) -> int | None:
        """The sequence number of the packet that arrived last (None: none, or unknown)."""
        ...

    async def hang_up(self) -> dict[str, Any]:
        """End the leg, write its records, return its summary (``results.LegSummary``)."""
        ...


class Uncounted:
    """For a leg kind that does not count its packets for the drain (a browser; the light endpoint's
    legs for now): the drain then waits for quiet."""

    def sent_packets(self) -> int | None:
        return None

    def received_packets(self) -> int | None:
        return None

    def last_sent_seq(self) -> int | None:
        return None

    def last_received_seq(self) -> int | None:
        return None


L = TypeVar("L", bound=Leg)


async def each_leg(operations: list[Awaitable[Any]]) -> list[Any]:
    """Run one operation per leg; a leg that fails gives ``{"error": ...}`` instead of failing the batch."""
    results = await asyncio.gather(*operations, return_exceptions=True)
    return [{"error": f"{type(r).__name__}: {r}"} if isinstance(r, Exception) else r for r in results]


class LegBatches(Generic[L]):
    """An endpoint's legs by call id and the batch methods of ``base.Endpoint`` over them. A kind adds
    ``new_leg`` (and ``ready`` for what must run before its first leg)."""

    def __init__(self) -> None:
        self.legs: dict[str, L] = {}
        self.served = 0

    def new_leg(self, leg: LegSpec) -> L:
        raise NotImplementedError

    async def ready(self) -> None:
        """Whatever must run before the first leg (a browser driver); nothing by default."""

    def _add(self, leg: LegSpec) -> L:
        if leg.call in self.legs:
            raise ValueError(f"call {leg.call!r} exists already")
        Path(leg.out_dir).mkdir(parents=True, exist_ok=True)
        self.legs[leg.call] = self.new_leg(leg)
        self.served += 1
        return self.legs[leg.call]

    def _leg(self, call: str) -> L:
        if call not in self.legs:
            raise ValueError(f"no call {call!r}")
        return self.legs[call]

    async def open(self, legs: list[LegSpec]) -> list[Description]:
        await self.ready()

        async def one(leg: LegSpec) -> Description:
            return await self._add(leg).offer()

        return await each_leg([one(leg) for leg in legs])

    async def answer(self, legs: list[LegSpec], remotes: list[Description]) -> list[Description]:
        await self.ready()

        async def one(leg: LegSpec, remote: Description) -> Description:
            return await self._add(leg).answer(remote)

        return await each_leg([one(leg, remote) for leg, remote in zip(legs, remotes, strict=True)])

    async def accept(self, calls: list[str], remotes: list[Description]) -> list[dict[str, Any]]:
        async def one(call: str, remote: Description) -> dict[str, Any]:
            await self._leg(call).accept(remote)
            return {}

        return await each_leg([one(call, remote) for call, remote in zip(calls, remotes, strict=True)])

    async def stop_media(self, calls: list[str]) -> list[dict[str, Any]]:
        async def one(call: str) -> dict[str, Any]:
            leg = self._leg(call)
            stopped_at = await leg.stop_media()
            return {"stopped_at": stopped_at, "sent": leg.sent_packets(), "last_seq": leg.last_sent_seq()}

        return await each_leg([one(call) for call in calls])

    async def quiet_for(self, calls: list[str]) -> list[Any]:
        async def one(call: str) -> dict[str, Any]:
            leg = self._leg(call)
            quiet = await leg.quiet_for()
            return {"quiet": quiet, "received": leg.received_packets(), "last_seq": leg.last_received_seq()}

        return await each_leg([one(call) for call in calls])

    async def hang_up(self, calls: list[str]) -> list[dict[str, Any]]:
        async def one(call: str) -> dict[str, Any]:
            leg = self._leg(call)
            del self.legs[call]
            return await leg.hang_up()

        return await each_leg([one(call) for call in calls])

    def live(self) -> list[dict[str, Any]]:
        """Running counts per open leg (``Endpoint.live``); none for a kind without packet records."""
        return []
