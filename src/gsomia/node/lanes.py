"""Separate worker threads per lane, so bulk work never queues ahead of a flash report (R17).

Blocking work (database, sealing) runs in threads. One shared pool would let a burst
of 500-item provisions occupy every thread while a missile-launch report waits in
the queue; each lane therefore has its own pool, and small control calls
(authentication, tree heads, status) have theirs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

Lane = Literal["flash", "bulk", "control"]
R = TypeVar("R")

_POOLS: dict[str, ThreadPoolExecutor] = {
    "flash": ThreadPoolExecutor(max_workers=4, thread_name_prefix="gsomia-flash"),
    "bulk": ThreadPoolExecutor(max_workers=8, thread_name_prefix="gsomia-bulk"),
    "control": ThreadPoolExecutor(max_workers=4, thread_name_prefix="gsomia-control"),
}


async def run(lane: Lane | str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    pool = _POOLS.get(lane, _POOLS["bulk"])
    return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))
