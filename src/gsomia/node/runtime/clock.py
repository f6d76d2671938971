"""Where a node's "now" comes from. Only the demo may move it."""

from __future__ import annotations

from collections.abc import Callable
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
        self.on_set: Callable[[float], None] | None = None  # the node's flash process follows it

    def set(self, at: datetime) -> None:
        self._offset = at.astimezone(UTC) - datetime.now(UTC)
        if self.on_set is not None:
            self.on_set(self.offset)

    @property
    def offset(self) -> float:
        """Seconds ahead of real time: what a node's flash process is told (``node/link.py``)."""
        return self._offset.total_seconds()

    @offset.setter
    def offset(self, seconds: float) -> None:
        self._offset = timedelta(seconds=seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


Clock = SystemClock | SimulatedClock
