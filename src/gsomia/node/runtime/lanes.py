"""Separate worker threads per lane, so bulk work never queues ahead of a flash report (R17).

Blocking work (database, sealing) runs in threads. One shared pool would let a burst
of 500-item provisions occupy every thread while a missile-launch report waits in
the queue; each lane therefore has its own pool, and small control calls
(authentication, tree heads, status) have theirs. A node's ``Lanes`` are made with the
node (``Node.lanes``) and shut down with it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from gsomia.store import gate

Lane = Literal["flash", "bulk", "delivery", "control"]
R = TypeVar("R")


class Lanes:
    """The thread pools of one node's process, one per lane."""

    def __init__(self) -> None:
        # Writes from the flash and control lanes' threads are urgent: on SQLite they pass the
        # node's write gate before any bulk writer (``store.gate``). Threads start on first use.
        self._pools: dict[str, ThreadPoolExecutor] = {
            "flash": ThreadPoolExecutor(max_workers=4, thread_name_prefix="gsomia-flash", initializer=gate.mark_urgent),
            # One: bulk work is GIL-bound, so a second thread adds no throughput; it would only make
            # two provisions (or a received batch and a ledger turn) contend for the GIL and the
            # log's counter. The delivery worker has a thread of its own, below.
            "bulk": ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsomia-bulk"),
            # The bulk lane's delivery worker (claim, encode, record the receipt): a thread of its own,
            # so it does not queue behind provisions that hold the bulk thread for as long as
            # clients keep posting, and the partner receives while this node is still sealing.
            "delivery": ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsomia-delivery"),
            "control": ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="gsomia-control", initializer=gate.mark_urgent
            ),
        }
        self._flash_active = 0
        self._flash_lock = threading.Lock()

    async def run(self, lane: Lane | str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        pool = self._pools.get(lane, self._pools["bulk"])
        call = functools.partial(fn, *args, **kwargs)
        if lane != "flash":
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        with self._flash_lock:
            self._flash_active += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        finally:
            with self._flash_lock:
                self._flash_active -= 1

    def yield_to_flash(self, limit: float = 0.05) -> None:
        """Called by bulk work between items: step aside (and release the GIL) while flash work runs.

        Bounded, so bulk traffic slows under a storm of flash reports but never stops.
        """
        if not self._flash_active:
            return
        deadline = time.monotonic() + limit
        while self._flash_active and time.monotonic() < deadline:
            time.sleep(0.0005)

    def close(self) -> None:
        """Stop taking work; threads finish what they hold."""
        for pool in self._pools.values():
            pool.shutdown(wait=False)
