"""Where a node's "now" comes from. Only the demo may move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SystemClock:
    simulated = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Demo mode only: time starts at a chosen instant and runs at real speed from there."""

    simulated = True

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = timedelta(0) if start is None else start - datetime.now(UTC)

    def set(self, at: datetime) -> None:
        self._offset = at.astimezone(UTC) - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


Clock = SystemClock | SimulatedClock


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0
