"""CPU priorities of a node's two processes (R17: flash work never waits behind bulk work).

Two cores, both node processes and often the database server share them. The main process
lowers itself (``lower_priority``); the flash process raises itself and, where the database
server runs on this host, its own database sessions (``raise_priority``,
``raise_database_sessions``).

Why real-time and not only an idle bulk: on this kernel (Linux 6.18, preemption "none" or
"lazy") a woken thread of the normal policy does not preempt a running SCHED_IDLE thread at
once; the idle thread keeps the core until its next timer tick, up to 4 ms at 250 Hz, and a
flash report wakes a thread a dozen times on its way through two nodes. ``perf sched``
showed bulk segments ended by the tick while flash threads were runnable: the flash
processes waited 14.5 ms per report for a core as normal threads, 1.5 ms as real-time ones,
whose wake-ups preempt normal and idle threads at once.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger("gsomia.priority")

REALTIME = 1  # SCHED_RR's lowest priority: above every normal thread, below the kernel's own


def lower_priority(nice: int, idle: bool) -> None:
    """Lower the CPU priority of this thread and of every thread it starts from now on (Linux
    keeps both per thread, and a new thread inherits its creator's).

    At nice 19 alone bulk work runs out its time slice before a woken flash thread has the
    core: on two cores under bulk load the flash processes' threads wait 27-29 ms per report
    for a core. A SCHED_IDLE thread yields to any other at its next timer tick (19-22 ms),
    and flash p50 is 18 ms instead of 21-23, with no loss of bulk throughput. Not at once:
    that takes a real-time flash process (``raise_priority``)."""
    os.nice(nice)
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError) as exc:  # not Linux: the nice value is what there is
            log.warning("bulk work keeps the normal scheduling policy (SCHED_IDLE: %s)", exc)


def raise_priority() -> None:
    """Linux's real-time SCHED_RR policy, at its lowest priority, for this thread and every
    thread it starts from now on. Not with SCHED_RESET_ON_FORK: that keeps it from new
    threads too. Needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO of at least 1; without, the
    flash process keeps the normal policy and says so once."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME))
    except (AttributeError, OSError) as exc:
        log.warning(
            "the flash process keeps the normal scheduling policy (SCHED_RR: %s): grant it CAP_SYS_NICE "
            "or an RLIMIT_RTPRIO of 1 (systemd: LimitRTPRIO=1), or set flash_realtime = false",
            exc,
        )


def raise_database_sessions(engine: Engine) -> None:
    """Each PostgreSQL session this engine opens from now on runs as SCHED_RR too, where its
    server process is on this host and may be changed (root or CAP_SYS_NICE).

    On two shared cores the flash process's statements otherwise wait behind the bulk
    sessions' (and, at each wake-up, behind an idle bulk thread's tick): a flash report's
    transaction took 5 ms at p50 and 60 at p99 under bulk load. The session's server
    process is found by the pid PostgreSQL reports and checked by its title, which names our
    end of the connection, so that no other process is ever changed: a server in another
    PID namespace (a container) or one that does not show titles is left as it is."""
    if engine.dialect.name != "postgresql":
        return
    warned: list[bool] = []

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        pid = _local_backend(dbapi_connection)
        if pid is None:
            return
        try:
            os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(REALTIME))
        except OSError as exc:
            if not warned:
                warned.append(True)
                log.warning("the flash process's database sessions keep their priority (SCHED_RR: %s)", exc)

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # sessions already pooled (migrations) are opened again, through on_connect


def _local_backend(dbapi_connection: Any) -> int | None:
    """The pid of the server process behind a psycopg connection, if it is on this host."""
    try:
        pid = int(dbapi_connection.info.backend_pid)
        with socket.socket(fileno=os.dup(dbapi_connection.pgconn.socket)) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None  # a Unix socket's title says [local]: nothing to check it by
            ours = sock.getsockname()[1]
            theirs = sock.getpeername()[0]
        if theirs != "::1" and not theirs.startswith(("127.", "::ffff:127.")):
            return None  # another host: its processes are not ours to see
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (AttributeError, OSError, ValueError):
        return None
    return pid if title.startswith(b"postgres") and f"({ours})".encode() in title else None
