"""Benchmark: acknowledged sealed items per second between two real nodes, flash
latency under that load, and the OASIS TAXII 2.1 reference server for comparison.

One run does all of it:

(a) gsomia bulk, per backend (SQLite always; PostgreSQL too with ``--postgres``, in
    two fresh databases dropped afterwards; ``--postgres-flash``, PostgreSQL again with
    each node's flash lane in a database of its own, ``flash_database_url``, on a second
    PostgreSQL server that the bench makes with ``initdb`` and removes: a write-ahead log
    of the flash lanes' own, ``docs/operations.md``). A KOR/JPN pair is provisioned in a
    temporary directory and both nodes run as real processes (``gsomia node
    serve``). ``--items`` items (default 20,000) of 1 KiB random payload
    (``payload_b64``, 군사II급비밀, purposes ["nk-missile"]) are posted to KOR's
    ``POST /items`` in batches of ``--batch`` (500) from ``--clients`` (4) client
    threads. The clock runs from the first POST until KOR's ``GET /outbox`` says
    nothing is pending, i.e. every item is acknowledged by JPN's signed receipt.
    Request bodies are built before the clock starts. At the end JPN's
    ``GET /items`` is paged through: it must hold exactly the N item ids KOR
    returned, each once.
(b) Flash latency under that bulk load: while (a) runs, a JPN duty officer posts a
    flash report (極秘, ["nk-missile"]) to KOR every ``--flash-interval`` (50 ms);
    a KOR duty officer subscribed to ``GET /alerts/stream`` (SSE) notes when each
    arrives. Latency = arrival - the instant just before the POST, both
    ``time.perf_counter`` (CLOCK_MONOTONIC, one clock for the machine): the officer's
    client and the console are two processes of their own, as two people in two
    countries would be (``--probe-in-process``: two threads of this one). A few reports
    are sent and discarded first, to open the connections. The probe's processes run at
    the normal priority, as a console would; ``--probe-realtime`` runs them as SCHED_RR, like the
    nodes' flash processes, for a console on a machine of its own (on these two shared
    cores a normal process waits for a SCHED_IDLE bulk thread's timer tick at each
    wake-up, ``gsomia.node.runtime.priority``). The two give the same figures within the
    machine's noise, since the flash path waits for no bulk work.
(c) medallion (the TAXII 2.1 reference server) with its in-memory backend, run as
    its own server process (``medallion.scripts.run``, Flask's threaded server),
    ingesting the same number of STIX 2.1 ``indicator`` objects (a 1,368-character
    description each, as long as the base64 of a 1 KiB payload) through
    ``taxii2client.v21.Collection.add_objects`` in envelopes of the same batch
    size from the same number of client threads, until every add's status is
    ``complete``; then all objects are read back and counted.

Targets: >= 1,000 acknowledged items/s on SQLite, >= 2,000 on PostgreSQL, flash
p99 <= 25 ms. Everything shares this machine's cores (both nodes, the clients, the
database server, medallion), so the CPU time of each process is printed too.

Needs ``medallion``, ``taxii2-client`` and ``stix2`` for (c), which the project does
not depend on: ``.venv/bin/pip install medallion taxii2-client stix2`` (or
``--skip-medallion``). ``--py-spy DIR`` records both nodes during the bulk run
with py-spy (``pip install py-spy``) and prints where their CPU time goes
(``--py-spy-idle DIR``: during the ``--idle-flash`` reports, with no bulk traffic); ``--trace``
has both nodes mark each flash report's hops (``gsomia.node.runtime.trace``) and prints how long
the reports sent under load spent at each.

``--idle-streams N`` holds N alert streams open on KOR's user API for flash reports (its flash
process's, where it runs one) for the whole run, spread over as many analysts as KOR's
``max_streams_per_user`` needs: with ``--idle-streams-read`` each stream shows every report
(the analysts are cleared for them), without it none does (cleared one level below). The
flash latency is then measured beside them: an idle stream must cost the flash path nothing.

Run: ``.venv/bin/python bench/exchange.py [--postgres] [--items N] [--json FILE]``.
The nodes run whatever ``gsomia`` is importable (printed at the start). To measure one
commit while the work tree changes under you, run from a snapshot:
``git archive HEAD | tar -x -C DIR`` then ``PYTHONPATH=DIR/src .venv/bin/python DIR/bench/exchange.py``.
PostgreSQL: ``GSOMIA_TEST_PG`` (default the local server, trust auth) names the
database used to create and drop the two benchmark databases.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import math
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

from gsomia.cli.demo import terms_only
from gsomia.node.process import NodeProcess, start_all
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup.provision import Provisioned, free_port, provision_pair
from gsomia.store.db import open_node_database

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
PG_ADMIN = os.environ.get("GSOMIA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TARGET_ITEMS_PER_S = {"sqlite": 1_000.0, "postgresql": 2_000.0, "postgresql+flash": 2_000.0}
BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "postgresql+flash": "PostgreSQL+flash server"}
TARGET_FLASH_P99_MS = 25.0
PAYLOAD = 1024
CLASSIFICATION = "군사II급비밀"
FLASH_CLASSIFICATION = "極秘"
PURPOSES = ["nk-missile"]
FLASH_WARMUP = 5
TICK = os.sysconf("SC_CLK_TCK")


# --- the machine and CPU accounting ---------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "tmp": tempfile.gettempdir(),
        "code": _code_version(),
    }


def _code_version() -> str:
    """Which gsomia the nodes run: its directory and, in a git checkout, the commit (and whether it is dirty)."""
    import gsomia

    where = Path(gsomia.__file__).resolve().parent
    try:
        described = subprocess.run(
            ["git", "-C", str(where), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = "not a git checkout"
    return f"{where} ({described})"


def settle_disk() -> str:
    """Write back what earlier work left dirty (a build, the previous run) before a timed run.

    The kernel writes dirty pages back about 30 s after they were made, which could fall
    in the run and make its fsyncs wait. On a 2-core Intel Xeon machine it did not (800 MB
    left dirty on purpose changed nothing), but the figure says how much there was.
    """

    def dirty_kib() -> int:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Dirty:"):
                return int(line.split()[1])
        return 0

    before = dirty_kib()
    t0 = time.perf_counter()
    os.sync()
    return f"{before / 1024:,.0f} MB dirty written back in {time.perf_counter() - t0:.2f} s"


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def run_delay(pid: int) -> float:
    """Seconds the threads of one process spent ready to run but waiting for a core (schedstat)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    return total / 1e9


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat", encoding="utf-8") as f:
        parts = [int(x) for x in f.readline().split()[1:9]]
    idle = parts[3] + parts[4]
    total = sum(parts)
    return (total - idle) / TICK, total / TICK


def pids_matching(*needles: str) -> list[int]:
    """Processes whose command line holds every needle (PostgreSQL backends name their database)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            found.append(int(entry))
    return found


@dataclass
class CpuMeter:
    """CPU seconds per named group of processes between ``start`` and ``stop``, and (``waited``)
    the seconds their threads spent ready to run but waiting for a core."""

    groups: dict[str, Callable[[], list[int]]]
    before: dict[int, float] = field(default_factory=dict)
    delay_before: dict[int, float] = field(default_factory=dict)
    waited: dict[str, float] = field(default_factory=dict)
    system_before: tuple[float, float] = (0.0, 0.0)
    client_before: float = 0.0
    wall_before: float = 0.0

    def start(self) -> None:
        self.before = {pid: proc_cpu(pid) for pids in self.groups.values() for pid in pids()}
        self.delay_before = {pid: run_delay(pid) for pids in self.groups.values() for pid in pids()}
        self.system_before = system_cpu()
        self.client_before = _own_cpu()
        self.wall_before = time.perf_counter()

    def stop(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pids in self.groups.items():
            out[name] = round(sum(proc_cpu(pid) - self.before.get(pid, 0.0) for pid in pids()), 2)
            self.waited[name] = round(sum(run_delay(pid) - self.delay_before.get(pid, 0.0) for pid in pids()), 2)
        out["client (this process)"] = round(_own_cpu() - self.client_before, 2)
        busy, total = system_cpu()
        out["machine busy"] = round(busy - self.system_before[0], 2)
        out["machine capacity"] = round(total - self.system_before[1], 2)
        out["wall"] = round(time.perf_counter() - self.wall_before, 2)
        ours = sum(v for k, v in out.items() if k not in ("machine busy", "machine capacity", "wall"))
        out["everything else"] = round(max(0.0, out["machine busy"] - ours), 2)
        return out


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- statistics -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- PostgreSQL databases ------------------------------------------------------------------------


@contextlib.contextmanager
def pg_databases(count: int, server: str = PG_ADMIN) -> Iterator[list[str]]:
    """Fresh databases on the server named by ``server``, dropped afterwards whatever happens."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    names = [f"gsomia_bench_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    created: list[str] = []
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        yield [server.rsplit("/", 1)[0] + f"/{name}" for name in names]
    finally:
        try:
            with admin.connect() as conn:
                for name in created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


@contextlib.contextmanager
def second_pg_server(tmp: Path) -> Iterator[str]:
    """A PostgreSQL server of the bench's own beside the machine's, for the flash lanes'
    databases (``flash_database_url``): a write-ahead log of their own, as a party would
    give its flash lane. Made with the machine's ``initdb`` (as the ``postgres`` user when
    run as root), with the server's defaults (fsync and synchronous_commit on), on a free
    port; stopped and deleted afterwards. Yields its admin URL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("--postgres-flash: no initdb under /usr/lib/postgresql/*/bin (Debian's postgresql package)")
    bindir = found[-1].parent
    data = tmp / "flash-pg"
    data.mkdir(mode=0o700)
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as postgres, as the machine's does
        shutil.chown(tmp, "postgres")
        shutil.chown(data, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)

    run(*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-w"]
    run(*ctl, "-o", options, "-l", str(data / "server.log"), "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(*ctl, "-m", "fast", "stop")


class WalMeter:
    """The write-ahead log each PostgreSQL server wrote during the run, and how many segment
    files it had to make. A commit waits for every byte of WAL before it, and a server
    that makes a new segment (zero-filled, 16 MB) instead of recycling an old one holds
    the WAL write lock meanwhile: the flash misses of a fresh server's first runs."""

    SQL = (
        "SELECT (SELECT wal_bytes FROM pg_stat_wal), "
        "(SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$')"
    )

    def __init__(self, servers: dict[str, str]) -> None:
        self.servers = servers
        self.before: dict[str, tuple[int, int]] = {}

    def _read(self) -> dict[str, tuple[int, int]]:
        from sqlalchemy import create_engine, text

        seen = {}
        for name, url in self.servers.items():
            engine = create_engine(url, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    row = conn.execute(text(self.SQL)).one()
                seen[name] = (int(row[0]), int(row[1]))
            finally:
                engine.dispose()
        return seen

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, dict[str, float]]:
        after = self._read()
        return {
            name: {
                "mb": round((after[name][0] - self.before[name][0]) / 1e6, 1),
                "segments_added": after[name][1] - self.before[name][1],
            }
            for name in self.servers
        }


# --- flash reports under load ---------------------------------------------------------------------


FlashTimes = dict[str, tuple[str, float, float]]  # text -> (item id, time.time() sent, arrived)


class _ProbeTimes:
    """What a flash probe records, and the two readings of it; in this process or in its own."""

    sent: dict[str, float]
    arrived: dict[str, float]
    wall: dict[str, tuple[float, float]]  # text -> (time.time() sent, arrived)
    item_ids: dict[str, str]  # text -> the alert's item id

    def latencies_ms(self) -> list[float]:
        return [(self.arrived[t] - s) * 1000 for t, s in self.sent.items() if t in self.arrived]

    def times(self) -> FlashTimes:
        return {text: (item_id, *self.wall.get(text, (math.nan, math.nan))) for text, item_id in self.item_ids.items()}


class FlashProbe(_ProbeTimes):
    """JPN duty officer sends flash reports to KOR; a KOR duty officer's SSE console times them.

    ``roles`` says which of the two this one plays: both (``--probe-in-process``), or one,
    in a process of its own (``ProbeProcess``). Reports are texts tagged with ``tag``, which
    both ends of a pair share."""

    def __init__(
        self,
        kor: Provisioned,
        jpn: Provisioned,
        interval: float,
        roles: tuple[str, ...] = ("send", "listen"),
        tag: str = "",
    ) -> None:
        self.kor, self.jpn, self.interval = kor, jpn, interval
        self.roles = roles
        self.tag = tag or uuid.uuid4().hex[:8]
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.wall: dict[str, tuple[float, float]] = {}
        self.item_ids: dict[str, str] = {}
        self.idle_times: FlashTimes = {}
        self.post_ms: list[float] = []
        self.errors: list[str] = []
        self.ready = threading.Event()
        self.closing = threading.Event()
        self.sending = threading.Event()
        self._count = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=jpn.alerts_url, headers={"Authorization": f"Bearer {jpn.tokens['duty_officer']}"}, timeout=30
        )
        self._listener = threading.Thread(target=self._listen, name="flash-listener", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="flash-sender", daemon=True)

    def start(self) -> None:
        if "listen" not in self.roles:
            return
        self._listener.start()
        if not self.ready.wait(10):
            raise RuntimeError("the KOR duty officer's alert stream did not open")

    def _listen(self) -> None:
        headers = {"Authorization": f"Bearer {self.kor.tokens['duty_officer']}", "Accept": "text/event-stream"}
        last = None
        while not self.closing.is_set():
            try:
                with httpx.stream(
                    "GET",
                    f"{self.kor.alerts_url}/alerts/stream",
                    headers={**headers, **({"Last-Event-ID": last} if last else {})},
                    timeout=httpx.Timeout(None, connect=5),
                ) as response:
                    response.raise_for_status()
                    self.ready.set()
                    data = ""
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            data += line[5:].strip()
                        elif line.startswith("id:"):
                            last = line[3:].strip()
                        elif not line and data:
                            now, wall = time.perf_counter(), time.time()
                            text = json.loads(data).get("text", "")
                            data = ""
                            if text.startswith(f"bench {self.tag} ") and text not in self.arrived:
                                self.arrived[text] = now
                                self.wall[text] = (self.wall.get(text, (math.nan, 0.0))[0], wall)
                        if self.closing.is_set():
                            return
            except (httpx.HTTPError, ValueError) as exc:
                if not self.closing.is_set():
                    self.errors.append(f"stream: {exc}")
                    time.sleep(0.1)

    def send_one(self) -> str:
        with self._lock:
            self._count += 1
            text = f"bench {self.tag} {self._count}"
        body = {"to": "KOR", "classification": FLASH_CLASSIFICATION, "text": text, "purposes": PURPOSES}
        self.wall[text] = (time.time(), math.nan)
        start = time.perf_counter()
        self.sent[text] = start
        r = self._http.post("/alerts", json=body)
        self.post_ms.append((time.perf_counter() - start) * 1000)
        if r.status_code != 201:
            self.errors.append(f"POST /alerts: HTTP {r.status_code}: {r.text[:200]}")
        else:
            self.item_ids[text] = r.json()["alert"]["item_id"]
        return text

    def send_burst(self, count: int, spacing: float = 0.0) -> list[str]:
        texts = []
        for _ in range(count):
            texts.append(self.send_one())
            if spacing:
                time.sleep(spacing)
        return texts

    def wait_for(self, texts: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(t in self.arrived for t in texts):
            time.sleep(0.01)

    def warm_up(self) -> None:
        self.wait_for(self.send_burst(FLASH_WARMUP), 20)
        self.reset()

    def idle(self, count: int) -> list[float]:
        """Latencies (ms) of ``count`` reports with no other traffic: the baseline."""
        texts = self.send_burst(count, self.interval or 0.05)
        self.wait_for(texts, 20)
        out = self.latencies_ms()
        self.idle_times = self.times()
        self.reset()
        return out

    def reset(self) -> None:
        self.sent.clear()
        self.arrived.clear()
        self.wall.clear()
        self.item_ids.clear()
        self.post_ms.clear()
        self.errors.clear()

    def start_sending(self) -> None:
        if self.interval > 0:
            self.sending.set()
            self._sender.start()

    def _send_loop(self) -> None:
        t0 = time.perf_counter()
        k = 0
        while self.sending.is_set():
            try:
                self.send_one()
            except httpx.HTTPError as exc:
                self.errors.append(f"POST /alerts: {exc}")
            k += 1
            delay = t0 + k * self.interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def stop_sender(self) -> None:
        self.sending.clear()
        if self._sender.is_alive():
            self._sender.join()

    def stop_sending(self, settle: float = 15.0) -> None:
        self.stop_sender()
        self.wait_for(list(self.sent), settle)

    def close(self) -> None:
        self.sending.clear()
        self.closing.set()
        self._http.close()


class _ProbeChild:
    """One ``FlashProbe`` role in a process of its own, driven over a pipe."""

    def __init__(
        self, kor: Provisioned, jpn: Provisioned, interval: float, realtime: bool, role: str, tag: str
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_probe_main,
            args=(child, kor, jpn, interval, realtime, role, tag),
            name=f"flash-probe-{role}",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self.pid: int = self._proc.pid or 0

    def call(self, name: str, *args: Any) -> Any:
        self._conn.send((name, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"flash probe: {value}")
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, RuntimeError):
            self.call("close")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


class ProbeProcess(_ProbeTimes):
    """The two duty officers in two processes (``--probe-in-process``: both in this one).

    A duty officer's console is not the analysts' upload client. In one process the probe's
    sender and listener threads waited for the GIL behind the bulk client threads (up to the
    5 ms switch interval at each timestamp), which counted as flash latency. Nor is JPN's
    officer's client KOR's officer's console: in one process of their own the console's
    thread still waited for the GIL whenever the sender held it and the scheduler had put
    the sender aside, so each has its own now. Timestamps are ``time.perf_counter``
    (CLOCK_MONOTONIC), comparable across the processes."""

    def __init__(self, kor: Provisioned, jpn: Provisioned, interval: float, realtime: bool = False) -> None:
        tag = uuid.uuid4().hex[:8]
        self._sender = _ProbeChild(kor, jpn, interval, realtime, "send", tag)
        self._console = _ProbeChild(kor, jpn, interval, realtime, "listen", tag)
        self.interval = interval
        self.pids = [self._sender.pid, self._console.pid]
        self.idle_times: FlashTimes = {}
        self._state()
        self.policy = "SCHED_RR" if os.sched_getscheduler(self._console.pid) == os.SCHED_RR else "normal"

    def _state(self) -> None:
        sent, seen = self._sender.call("state"), self._console.call("state")
        self.sent, self.item_ids, self.post_ms = sent["sent"], sent["item_ids"], sent["post_ms"]
        self.arrived = seen["arrived"]
        self.errors = sent["errors"] + seen["errors"]
        nan = (math.nan, math.nan)
        self.wall = {
            text: (sent["wall"].get(text, nan)[0], seen["wall"].get(text, nan)[1])
            for text in sent["wall"].keys() | seen["wall"].keys()
        }

    def _reset(self) -> None:
        self._sender.call("reset")
        self._console.call("reset")
        self._state()

    def start(self) -> None:
        self._console.call("start")

    def warm_up(self) -> None:
        self._console.call("wait_for", self._sender.call("send_burst", FLASH_WARMUP), 20)
        self._reset()

    def idle(self, count: int) -> list[float]:
        self._console.call("wait_for", self._sender.call("send_burst", count, self.interval or 0.05), 20)
        self._state()
        out = self.latencies_ms()
        self.idle_times = self.times()
        self._reset()
        return out

    def start_sending(self) -> None:
        self._sender.call("start_sending")

    def stop_sending(self, settle: float = 15.0) -> None:
        self._sender.call("stop_sender")
        self._console.call("wait_for", list(self._sender.call("state")["sent"]), settle)
        self._state()

    def close(self) -> None:
        self._sender.close()
        self._console.close()


def _probe_main(
    conn: Any, kor: Provisioned, jpn: Provisioned, interval: float, realtime: bool, role: str, tag: str
) -> None:
    if realtime:  # as the nodes' flash processes: a console on a machine of its own waits for no bulk work
        with contextlib.suppress(AttributeError, OSError):  # not permitted: the normal policy, as printed
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    probe = FlashProbe(kor, jpn, interval, roles=(role,), tag=tag)
    state = ("sent", "arrived", "wall", "item_ids", "post_ms", "errors")
    while True:
        try:
            name, args = conn.recv()
        except EOFError:  # the benchmark is gone
            probe.close()
            return
        try:
            value = {k: getattr(probe, k) for k in state} if name == "state" else getattr(probe, name)(*args)
            conn.send((True, value))
        except Exception as exc:
            conn.send((False, f"{type(exc).__name__}: {exc}"))
        if name == "close":
            return


# --- gsomia bulk --------------------------------------------------------------------------------


@dataclass
class GsomiaResult:
    backend: str
    items: int
    batch: int
    clients: int
    seconds: float
    items_per_s: float
    post_seconds: float
    post_items_per_s: float
    pending_at_post_end: int
    drain_seconds: float
    post_ms_p50: float
    post_ms_p99: float
    verified: bool
    verify_note: str
    flash_sent: int
    flash_received: int
    flash_ms_p50: float
    flash_ms_p99: float
    flash_ms_max: float
    flash_post_ms_p50: float
    flash_post_ms_p99: float
    idle_flash_ms_p50: float
    idle_flash_ms_p99: float
    idle_flash_cpu_ms: dict[str, float]  # CPU per report with no bulk traffic, by process (idle polling included)
    flash_errors: list[str]
    cpu_seconds: dict[str, float]
    run_queue_seconds: dict[str, float]  # threads ready to run, waiting for a core, by process group
    timeline: list[tuple[float, int, int]]  # (s since start, posted, pending at KOR)
    phases: dict[str, Any] = field(default_factory=dict)
    wal: dict[str, dict[str, float]] = field(default_factory=dict)  # by server: MB written, segment files added
    trace: dict[str, dict[str, float]] = field(default_factory=dict)
    trace_slowest: list[str] = field(default_factory=list)  # the slowest reports' hops of 1 ms or more
    profiles: dict[str, str] = field(default_factory=dict)
    probe: str = ""  # where the flash probe ran: its own process (SCHED_RR or normal) or this one
    # Each report sent under load: (s since the bulk clock started, latency in ms), for when the slow ones came.
    flash_series: list[tuple[float, float]] = field(default_factory=list)
    idle_streams: int = 0  # alert streams held open on KOR beside the probe's (``IdleStreams``)
    idle_streams_read: bool = False  # whether they showed the reports
    idle_stream_events: int = 0  # reports they showed, all streams together


class IdleStreams:
    """``count`` alert streams held open on KOR's flash user API, as analysts' consoles left open.

    Spread over as many analysts as KOR's ``max_streams_per_user`` needs; with ``read`` they are
    cleared for the flash reports (each stream shows each one, and each analyst's read of it
    is entered once), without it one level below (no stream has anything to show). All held
    by one event loop in a thread of this process."""

    def __init__(self, kor: Provisioned, count: int, read: bool) -> None:
        self.url, self.count, self.read = kor.alerts_url, count, read
        config = node_config.load(kor.config)
        per_user = config.max_streams_per_user
        node = Node(config, open_node_database(config), SystemClock())
        try:  # before the nodes start: users of their own, beside the demo's
            clearance = "군사II급비밀" if read else "군사III급비밀"
            self.tokens = [
                node.add_user(f"kor.idle-{n}", "analyst", clearance, PURPOSES)
                for n in range(math.ceil(count / per_user))
            ]
        finally:
            node.dispose()
        self.users = len(self.tokens)
        self.opened = 0
        self.events = 0
        self.errors: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="idle-streams", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(120) or self.errors:
            raise RuntimeError(f"{self.opened} of {self.count} idle streams opened: {self.errors[:3]}")
        print(
            f"  idle streams: {self.count} open by {self.users} analysts, {'each showing' if self.read else 'none showing'} the reports"
        )

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(None, connect=10), limits=limits) as c:
            tasks = [asyncio.create_task(self._hold(c, self.tokens[n % self.users])) for n in range(self.count)]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _hold(self, client: httpx.AsyncClient, token: str) -> None:
        try:
            async with client.stream("GET", "/alerts/stream", headers={"Authorization": f"Bearer {token}"}) as r:
                if r.status_code != 200:
                    self.errors.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                    self._ready.set()
                    return
                self.opened += 1
                if self.opened == self.count:
                    self._ready.set()
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        self.events += 1
        except httpx.HTTPError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self._ready.set()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def request_bodies(n: int, batch: int) -> list[bytes]:
    bodies = []
    for start in range(0, n, batch):
        items = [
            {
                "to": "JPN",
                "classification": CLASSIFICATION,
                "payload_b64": base64.b64encode(os.urandom(PAYLOAD)).decode(),
                "purposes": PURPOSES,
            }
            for _ in range(min(batch, n - start))
        ]
        bodies.append(json.dumps({"items": items}, ensure_ascii=False).encode("utf-8"))
    return bodies


def pending(http: httpx.Client) -> int:
    r = http.get("/outbox")
    r.raise_for_status()
    return int(r.json()["pending"])


def received_bulk_ids(node: Provisioned) -> list[str]:
    ids: list[str] = []
    after = 0
    with httpx.Client(
        base_url=node.user_url, headers={"Authorization": f"Bearer {node.tokens['analyst']}"}, timeout=120
    ) as http:
        while True:
            r = http.get("/items", params={"after": after, "limit": 1000})
            r.raise_for_status()
            page = r.json()
            if not page["items"]:
                return ids
            ids.extend(i["item_id"] for i in page["items"] if i["direction"] == "in" and i["lane"] == "bulk")
            after = page["next"]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values, default=math.nan), 1),
    }


def phases(nodes: dict[str, Provisioned], flash_sets: dict[str, FlashTimes]) -> dict[str, Any]:
    """Where the time went, from the nodes' own timestamps (same machine, same clock).

    Bulk, per delivery batch as JPN stored it (one ``received_at`` per peer request):
    ``jpn`` = JPN's ``received_at`` -> KOR's ``delivered_at`` (JPN opens and stores the
    batch, signs the receipt; KOR checks it), ``kor`` = that ``delivered_at`` -> JPN's
    ``received_at`` of the next batch (KOR marks the rows, claims the next batch, egress
    check, encodes, signs, sends; JPN reads and authenticates the request).
    Flash, per report: ``jpn_api`` = client send -> JPN's ``provided_at``; ``to_kor`` =
    ``provided_at`` -> KOR's ``received_at`` (JPN seals and commits, the flash worker
    claims and sends, KOR authenticates); ``kor_to_console`` = KOR's ``received_at`` ->
    the SSE event in the client (KOR opens, stores, acknowledges, wakes the stream,
    which reads and opens it again).
    """
    from sqlalchemy import select

    from gsomia.node.runtime import config as node_config
    from gsomia.store import schema as t
    from gsomia.store.db import make_engine

    engines = {p: make_engine(node_config.load(n.config).database_url) for p, n in nodes.items()}
    try:
        with engines["JPN"].connect() as c:
            received = c.execute(
                select(t.items.c.item_id, t.items.c.received_at).where(
                    t.items.c.direction == "in", t.items.c.lane == "bulk"
                )
            ).all()
            flash_out = dict(
                c.execute(
                    select(t.items.c.item_id, t.items.c.provided_at).where(
                        t.items.c.direction == "out", t.items.c.lane == "flash"
                    )
                ).all()
            )
        with engines["KOR"].connect() as c:
            delivered = dict(
                c.execute(
                    select(t.outbox.c.ref, t.outbox.c.delivered_at).where(
                        t.outbox.c.lane == "bulk", t.outbox.c.kind == "item"
                    )
                ).all()
            )
            flash_in = dict(
                c.execute(
                    select(t.items.c.item_id, t.items.c.received_at).where(
                        t.items.c.direction == "in", t.items.c.lane == "flash"
                    )
                ).all()
            )
    finally:
        for engine in engines.values():
            engine.dispose()

    batches: dict[float, list[float]] = {}
    for item_id, at in received:
        done = delivered.get(item_id)
        if at is not None and done is not None:
            batches.setdefault(at.timestamp(), []).append(done.timestamp())
    ordered = sorted((b, max(ds), len(ds)) for b, ds in batches.items())
    jpn = [(d - b) * 1000 for b, d, _ in ordered]
    kor = [(nb - d) * 1000 for (_, d, _), (nb, _, _) in pairwise(ordered)]
    out: dict[str, Any] = {
        "bulk_batches": len(ordered),
        "bulk_batch_items_mean": round(sum(n for *_, n in ordered) / len(ordered), 1) if ordered else 0,
        "bulk_jpn_ms": _ms(jpn),
        "bulk_kor_ms": _ms(kor),
        "bulk_jpn_s_total": round(sum(jpn) / 1000, 2),
        "bulk_kor_s_total": round(sum(kor) / 1000, 2),
    }
    for name, times in flash_sets.items():
        api, to_kor, to_console = [], [], []
        for item_id, sent, arrived in times.values():
            provided, at_kor = flash_out.get(item_id), flash_in.get(item_id)
            if provided is None or at_kor is None or math.isnan(arrived):
                continue
            api.append((provided.timestamp() - sent) * 1000)
            to_kor.append((at_kor.timestamp() - provided.timestamp()) * 1000)
            to_console.append((arrived - at_kor.timestamp()) * 1000)
        out[f"{name}_jpn_api_ms"] = _ms(api)
        out[f"{name}_to_kor_ms"] = _ms(to_kor)
        out[f"{name}_kor_to_console_ms"] = _ms(to_console)
    return out


class PySpy:
    """``py-spy record`` of some processes, stopped on demand; raw (collapsed) stacks."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        exe = Path(sys.executable).with_name("py-spy")
        found = str(exe) if exe.exists() else shutil.which("py-spy")
        if not found:
            raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
        self.exe: str = found

    def record(self, name: str, pid: int) -> None:
        path = self.out / f"{name}.txt"
        proc = subprocess.Popen(
            [self.exe, "record", "--pid", str(pid), "--rate", "200", "--gil", "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[name] = (proc, path)

    def stop(self) -> dict[str, str]:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out = {}
        for name, (proc, path) in self.procs.items():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out[name] = str(path)
        self.procs.clear()
        return out


def spy_on_nodes(
    out: str | None,
    suffix: str,
    backend: str,
    pids: dict[str, int],
    groups: dict[str, Callable[[], list[int]]],
    stack: contextlib.ExitStack,
) -> PySpy | None:
    """With ``out``, record both nodes and their flash processes until ``stop`` (or the end)."""
    if not out:
        return None
    spy = PySpy(Path(out))
    Path(out).mkdir(parents=True, exist_ok=True)
    stack.callback(spy.stop)
    for party, pid in pids.items():
        spy.record(f"{backend}-{party}{suffix}", pid)
        for flash_pid in groups.get(f"{party} flash process", list)():
            spy.record(f"{backend}-{party}-flash{suffix}", flash_pid)
    time.sleep(1.0)  # let py-spy attach before the clock starts
    return spy


def trace_hops(path: Path, times: FlashTimes, slowest: int = 5) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per hop of ``trace.POINTS``, the time the probe's flash reports ``times`` spent there
    (ms), with the probe's own ends: its POST to the first mark, the last mark to its
    console; and, hop by hop, the ``slowest`` reports, to tell a stall from a spread."""
    from gsomia.node.runtime.trace import POINTS

    marks: dict[str, dict[str, float]] = {}
    with contextlib.suppress(OSError), path.open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                marks.setdefault(parts[2], {}).setdefault(parts[3], float(parts[0]))
    points = ("probe.sent", *POINTS, "probe.shown")
    hops: dict[str, list[float]] = {}
    each: list[tuple[float, list[tuple[str, float]]]] = []
    for item, sent, arrived in times.values():
        seen = {**marks.get(item, {}), "probe.sent": sent, "probe.shown": arrived}
        steps = []
        for a, b in [*pairwise(points), (POINTS[0], POINTS[-1])]:
            if a in seen and b in seen and not math.isnan(seen[a] + seen[b]):
                ms = (seen[b] - seen[a]) * 1000
                if (a, b) == (POINTS[0], POINTS[-1]):
                    hops.setdefault("all of it", []).append(ms)
                else:
                    hops.setdefault(f"{a} -> {b}", []).append(ms)
                    steps.append((b, ms))
        if not math.isnan(arrived - sent):
            each.append(((arrived - sent) * 1000, steps))
    stats = {
        hop: {"n": len(v), "p50": percentile(v, 50), "p90": percentile(v, 90), "p99": percentile(v, 99)}
        for hop, v in hops.items()
    }
    worst = [
        f"{total:6.1f} ms: " + ", ".join(f"{point} {ms:.1f}" for point, ms in steps if ms >= 1.0)
        for total, steps in sorted(each, key=lambda e: e[0], reverse=True)[:slowest]
    ]
    return stats, worst


def summarize_profile(path: Path, top: int = 14) -> list[str]:
    """Share of samples per function, inclusive (anywhere on the stack) and self (innermost)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return [f"  (no profile at {path})"]
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short_frame(f) for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    if not total:
        return ["  (no samples)"]
    ours = [(f, n) for f, n in inclusive.most_common() if "gsomia/" in f and not f.startswith(("main ", "node_serve"))]
    out = [f"  {total} samples holding the GIL; inclusive, gsomia's own functions:"]
    out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in ours[:top]]
    out.append("  self:")
    out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return out


def _short_frame(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    at = max((i for i, part in enumerate(parts) if part == "gsomia"), default=-1)
    short = "/".join(parts[at:]) if at >= 0 else Path(file).name
    return f"{name} ({short})"


def run_gsomia(backend: str, args: argparse.Namespace, tmp_root: Path) -> GsomiaResult:
    label = BACKEND_NAMES[backend]
    split = not args.one_process
    shape = "a flash process per node" if split else "one process per node"
    print(f"\n== gsomia on {label}: {args.items:,} items, batches of {args.batch}, {args.clients} clients, {shape} ==")
    print(f"  before the run: {settle_disk()}")
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix=f"gsomia-bench-{backend}-", dir=tmp_root))
        stack.callback(shutil.rmtree, tmp, True)
        urls: dict[str, str] | None = None
        dbnames: list[str] = []
        flash_urls: dict[str, str] | None = None
        wal_servers: dict[str, str] = {}  # the servers whose write-ahead log the run measures
        if backend.startswith("postgresql"):
            pg = stack.enter_context(pg_databases(2))
            urls = {"KOR": pg[0], "JPN": pg[1]}
            dbnames = [u.rsplit("/", 1)[1] for u in pg]
            wal_servers["the nodes' server"] = PG_ADMIN
        if backend == "postgresql+flash":
            server = stack.enter_context(second_pg_server(tmp))
            wal_servers["the flash lanes' server"] = server
            own = stack.enter_context(pg_databases(2, server))
            flash_urls = {"KOR": own[0], "JPN": own[1]}
            dbnames += [u.rsplit("/", 1)[1] for u in own]
        agreement = terms_only(AGREEMENT, tmp / "agreement-terms.toml")
        nodes = provision_pair(tmp, agreement, database_urls=urls, flash_process=split, flash_database_urls=flash_urls)
        kor, jpn = nodes["KOR"], nodes["JPN"]
        if split and args.bulk_nice is not None:
            for n in nodes.values():
                top, _, peers = n.config.read_text().partition("[peers.")
                n.config.write_text(f"{top}bulk_nice = {args.bulk_nice}\n\n[peers.{peers}")
        idle_streams = IdleStreams(kor, args.idle_streams, args.idle_streams_read) if args.idle_streams else None
        procs = {p: NodeProcess(n.config, n.user_url, n.root / "node.log", n.flash_user_url) for p, n in nodes.items()}
        trace_log = tmp / "trace.log"
        if args.trace:
            os.environ["GSOMIA_TRACE"] = str(trace_log)  # read by each node process at its start
        try:
            for party, proc in procs.items():
                stack.callback(_stop_and_report, proc, party)
            start_all(list(procs.values()))
        finally:
            os.environ.pop("GSOMIA_TRACE", None)
        pids = {p: proc.proc.pid for p, proc in procs.items() if proc.proc}
        groups: dict[str, Callable[[], list[int]]] = {
            "KOR node": lambda: [pids["KOR"]],
            "JPN node": lambda: [pids["JPN"]],
        }
        if split:
            groups["KOR flash process"] = lambda: pids_matching("--flash-link", str(kor.config))
            groups["JPN flash process"] = lambda: pids_matching("--flash-link", str(jpn.config))
        if dbnames:
            groups["PostgreSQL (KOR db)"] = lambda: pids_matching("postgres", dbnames[0])
            groups["PostgreSQL (JPN db)"] = lambda: pids_matching("postgres", dbnames[1])
        if len(dbnames) == 4:
            groups["PostgreSQL (KOR flash db)"] = lambda: pids_matching("postgres", dbnames[2])
            groups["PostgreSQL (JPN flash db)"] = lambda: pids_matching("postgres", dbnames[3])

        bodies = request_bodies(args.items, args.batch)
        kor_http = stack.enter_context(
            httpx.Client(
                base_url=kor.user_url, headers={"Authorization": f"Bearer {kor.tokens['analyst']}"}, timeout=30
            )
        )
        probe: FlashProbe | ProbeProcess = (
            FlashProbe(kor, jpn, args.flash_interval)
            if args.probe_in_process
            else ProbeProcess(kor, jpn, args.flash_interval, realtime=args.probe_realtime)
        )
        if isinstance(probe, ProbeProcess):
            probe_pids = probe.pids
            groups["flash probe (its own processes)"] = lambda: probe_pids
            print(f"  flash probe: the two duty officers in two processes, {probe.policy} scheduling")
        stack.callback(probe.close)
        if idle_streams is not None:
            stack.callback(idle_streams.close)
            idle_streams.start()
        probe.start()
        probe.warm_up()
        idle_flash: list[float] = []
        idle_cpu_ms: dict[str, float] = {}
        idle_profiles: dict[str, str] = {}
        if args.idle_flash:
            idle_spy = spy_on_nodes(args.py_spy_idle, "-idle", backend, pids, groups, stack)
            idle_meter = CpuMeter(groups)
            idle_meter.start()
            idle_flash = probe.idle(args.idle_flash)
            if idle_spy:
                idle_profiles = idle_spy.stop()
            totals = ("wall", "machine capacity", "machine busy", "everything else")
            idle_cpu_ms = {  # per report sent: one that never arrived cost its CPU too
                k: round(1000 * v / args.idle_flash, 2) for k, v in idle_meter.stop().items() if k not in totals
            }

        spy = spy_on_nodes(args.py_spy, "", backend, pids, groups, stack)

        work: queue.Queue[bytes] = queue.Queue()
        for body in bodies:
            work.put(body)
        posted_ids: list[str] = []
        post_ms: list[float] = []
        lock = threading.Lock()
        abort = threading.Event()
        stack.callback(abort.set)
        posted = [0]

        def client() -> None:
            headers = {"Authorization": f"Bearer {kor.tokens['analyst']}", "Content-Type": "application/json"}
            with httpx.Client(base_url=kor.user_url, headers=headers, timeout=300) as http:
                while not abort.is_set():
                    try:
                        body = work.get_nowait()
                    except queue.Empty:
                        return
                    start = time.perf_counter()
                    r = http.post("/items", content=body)
                    elapsed = (time.perf_counter() - start) * 1000
                    if r.status_code != 201:
                        abort.set()
                        raise RuntimeError(f"POST /items: HTTP {r.status_code}: {r.text[:300]}")
                    ids = [i["item_id"] for i in r.json()["items"]]
                    with lock:
                        posted_ids.extend(ids)
                        post_ms.append(elapsed)
                        posted[0] += len(ids)

        timeline: list[tuple[float, int, int]] = []
        sampling = threading.Event()

        def sample(t0: float) -> None:
            with httpx.Client(
                base_url=kor.user_url, headers={"Authorization": f"Bearer {kor.tokens['analyst']}"}, timeout=30
            ) as http:
                while sampling.is_set():
                    with contextlib.suppress(httpx.HTTPError):
                        timeline.append((round(time.perf_counter() - t0, 2), posted[0], pending(http)))
                    time.sleep(args.sample_interval)

        wal = WalMeter(wal_servers)
        wal.start()
        meter = CpuMeter(groups)
        meter.start()
        pool = ThreadPoolExecutor(args.clients, thread_name_prefix="bulk")
        stack.callback(pool.shutdown, False, cancel_futures=True)
        t0 = time.perf_counter()
        futures: list[Future[None]] = [pool.submit(client) for _ in range(args.clients)]
        probe.start_sending()
        sampling.set()
        sampler = threading.Thread(target=sample, args=(t0,), name="sampler", daemon=True)
        sampler.start()
        stack.callback(sampling.clear)
        for f in futures:
            f.result()
        t_posted = time.perf_counter()
        deadline = time.monotonic() + max(120.0, args.items / 50)
        left = -1
        pending_at_post_end = pending(kor_http)
        while True:
            left = pending(kor_http)
            if left == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"KOR's outbox still holds {left} rows; see {tmp}/*/node.log")
            # Each look is a request and a count on KOR: every 20 ms they took about 2% of the
            # machine while it drained, and the end is known to within 50 ms either way.
            time.sleep(0.05)
        t_end = time.perf_counter()
        sampling.clear()
        probe.stop_sending()
        cpu = meter.stop()
        wal_written = wal.stop()
        profiles = spy.stop() if spy else {}
        sampler.join(5)

        seconds = t_end - t0
        print("  verifying JPN's items ...", flush=True)
        at_jpn = received_bulk_ids(jpn)
        expected = set(posted_ids)
        distinct = set(at_jpn)
        verified = len(posted_ids) == args.items and len(at_jpn) == args.items and distinct == expected
        note = (
            f"JPN holds {len(at_jpn):,} items ({len(distinct):,} distinct) of the {len(posted_ids):,} KOR accepted"
            + ("" if verified else f"; missing {len(expected - distinct):,}, unexpected {len(distinct - expected):,}")
        )
        flash = probe.latencies_ms()
        hops, slowest = trace_hops(trace_log, probe.times()) if args.trace else ({}, [])
        try:
            where = phases(nodes, {"flash": probe.times(), "idle_flash": probe.idle_times})
        except Exception as exc:  # a diagnostic: never lose the run for it
            where = {"error": f"{type(exc).__name__}: {exc}"}
        result = GsomiaResult(
            backend=backend,
            items=args.items,
            batch=args.batch,
            clients=args.clients,
            seconds=round(seconds, 3),
            items_per_s=round(args.items / seconds, 1),
            post_seconds=round(t_posted - t0, 3),
            post_items_per_s=round(args.items / (t_posted - t0), 1),
            pending_at_post_end=pending_at_post_end,
            drain_seconds=round(t_end - t_posted, 3),
            post_ms_p50=round(percentile(post_ms, 50), 1),
            post_ms_p99=round(percentile(post_ms, 99), 1),
            verified=verified,
            verify_note=note,
            flash_sent=len(probe.sent),
            flash_received=len(flash),
            flash_ms_p50=round(percentile(flash, 50), 2),
            flash_ms_p99=round(percentile(flash, 99), 2),
            flash_ms_max=round(max(flash, default=math.nan), 2),
            flash_post_ms_p50=round(percentile(probe.post_ms, 50), 2),
            flash_post_ms_p99=round(percentile(probe.post_ms, 99), 2),
            idle_flash_ms_p50=round(percentile(idle_flash, 50), 2),
            idle_flash_ms_p99=round(percentile(idle_flash, 99), 2),
            idle_flash_cpu_ms=idle_cpu_ms,
            flash_errors=probe.errors[:5],
            cpu_seconds=cpu,
            run_queue_seconds=meter.waited,
            timeline=timeline,
            phases=where,
            wal=wal_written,
            profiles={**idle_profiles, **profiles},
            trace=hops,
            trace_slowest=slowest,
            probe=f"own processes, {probe.policy}" if isinstance(probe, ProbeProcess) else "bench process",
            flash_series=sorted(
                (round(sent - t0, 3), round((probe.arrived[text] - sent) * 1000, 2))
                for text, sent in probe.sent.items()
                if text in probe.arrived
            ),
            idle_streams=args.idle_streams,
            idle_streams_read=args.idle_streams_read,
            idle_stream_events=idle_streams.events if idle_streams else 0,
        )
        report_gsomia(result)
        return result


def _stop_and_report(proc: NodeProcess, party: str) -> None:
    proc.stop()
    if proc.proc is not None and proc.proc.returncode not in (0, 130, -signal.SIGINT, None):
        print(f"  {party} node exited with {proc.proc.returncode}; last lines of {proc.log}:", file=sys.stderr)
        with contextlib.suppress(OSError):
            for line in proc.log.read_text(errors="replace").splitlines()[-15:]:
                print(f"    {line}", file=sys.stderr)


def report_gsomia(r: GsomiaResult) -> None:
    print(
        f"  acknowledged: {r.items:,} items in {r.seconds:.2f} s = {r.items_per_s:,.0f} items/s "
        f"({'verified' if r.verified else 'NOT VERIFIED'}: {r.verify_note})"
    )
    print(
        f"  sender API: all POSTs answered after {r.post_seconds:.2f} s ({r.post_items_per_s:,.0f} items/s; "
        f"per request of {r.batch}: p50 {r.post_ms_p50:.0f} ms, p99 {r.post_ms_p99:.0f} ms); "
        f"then {r.pending_at_post_end:,} pending, drained in {r.drain_seconds:.2f} s"
    )
    print(
        f"  flash under load: {r.flash_received}/{r.flash_sent} received, p50 {r.flash_ms_p50:.1f} ms, "
        f"p99 {r.flash_ms_p99:.1f} ms, max {r.flash_ms_max:.1f} ms "
        f"(POST /alerts answered: p50 {r.flash_post_ms_p50:.1f} ms, p99 {r.flash_post_ms_p99:.1f} ms); "
        f"with no bulk traffic before: p50 {r.idle_flash_ms_p50:.1f} ms, p99 {r.idle_flash_ms_p99:.1f} ms"
    )
    if r.idle_streams:
        print(
            f"  beside {r.idle_streams} idle alert streams "
            f"({'each showing the reports' if r.idle_streams_read else 'none showing the reports'}; "
            f"{r.idle_stream_events:,} reports shown on them)"
        )
    if r.idle_flash_cpu_ms:
        print(
            "  CPU per flash report with no bulk traffic (ms, idle polling included): "
            + ", ".join(f"{k} {v:.1f}" for k, v in r.idle_flash_cpu_ms.items())
        )
    for e in r.flash_errors:
        print(f"    flash error: {e}")
    cpu = r.cpu_seconds
    print(
        f"  CPU seconds over {cpu['wall']:.2f} s wall ({cpu['machine capacity']:.1f} core-s available): "
        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k not in ("wall", "machine capacity"))
    )
    if r.run_queue_seconds:
        flashes = sum(v for k, v in r.run_queue_seconds.items() if "flash process" in k)
        print(
            "  waiting for a core (threads ready to run; s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in r.run_queue_seconds.items())
            + (
                f"; both flash processes, per flash report: {1000 * flashes / r.flash_sent:.1f} ms"
                if r.flash_sent
                else ""
            )
        )
    if r.timeline:
        step = max(1, len(r.timeline) // 12)
        points = r.timeline[::step]
        if points[-1] != r.timeline[-1]:
            points.append(r.timeline[-1])
        print("  timeline (s: posted/pending at KOR): " + "  ".join(f"{t:.1f}: {p:,}/{q:,}" for t, p, q in points))
    if r.wal:
        print(
            "  write-ahead log during the run: "
            + "; ".join(
                f"{name} {w['mb']:,.0f} MB, {w['segments_added']:+d} segment files" for name, w in r.wal.items()
            )
        )
    ph = r.phases
    if "error" in ph:
        print(f"  phases: {ph['error']}")
    elif ph:

        def fmt(d: dict[str, float]) -> str:
            return f"p50 {d['p50']:.0f}, p99 {d['p99']:.0f}, max {d['max']:.0f} ms"

        print(
            f"  delivery KOR->JPN: {ph['bulk_batches']} batches of {ph['bulk_batch_items_mean']:.0f} on average; "
            f"per batch, JPN receive->KOR has the receipt: {fmt(ph['bulk_jpn_ms'])} "
            f"({ph['bulk_jpn_s_total']:.1f} s in all); KOR receipt->JPN receives the next: "
            f"{fmt(ph['bulk_kor_ms'])} ({ph['bulk_kor_s_total']:.1f} s in all)"
        )
        for name, what in (("flash", "under load"), ("idle_flash", "without bulk traffic")):
            if f"{name}_to_kor_ms" in ph:
                print(
                    f"  flash phases {what}: client->JPN provide {fmt(ph[f'{name}_jpn_api_ms'])}; "
                    f"JPN provide->KOR receive {fmt(ph[f'{name}_to_kor_ms'])}; "
                    f"KOR receive->SSE event {fmt(ph[f'{name}_kor_to_console_ms'])}"
                )
    if r.trace:
        print("  flash reports under load, hop by hop (--trace; ms):")
        for hop, d in r.trace.items():
            print(f"    {hop:40s} n {d['n']:4.0f}  p50 {d['p50']:6.1f}  p90 {d['p90']:6.1f}  p99 {d['p99']:6.1f}")
        print("  the slowest, hop by hop (ms in each hop of 1 ms or more, named by where it ends):")
        for line in r.trace_slowest:
            print(f"    {line}")
    for name, path in r.profiles.items():
        print(f"  py-spy {name} ({path}):")
        for line in summarize_profile(Path(path)):
            print(line)


# --- medallion ----------------------------------------------------------------------------------


@dataclass
class MedallionResult:
    objects: int
    batch: int
    clients: int
    seconds: float
    objects_per_s: float
    first_adds_ms: float
    last_adds_ms: float
    add_ms_p50: float
    add_ms_p99: float
    verified: bool
    verify_note: str
    cpu_seconds: dict[str, float]
    version: str


def stix_indicators(n: int) -> list[dict[str, Any]]:
    """``n`` distinct STIX 2.1 indicators; the first is built and checked by ``stix2``, the rest follow its shape."""
    import stix2

    def description() -> str:
        return base64.b64encode(os.urandom(PAYLOAD)).decode()

    first = stix2.v21.Indicator(
        name="bench indicator 0",
        description=description(),
        pattern=f"[file:hashes.'SHA-256' = '{os.urandom(32).hex()}']",
        pattern_type="stix",
        valid_from="2024-01-15T00:00:00Z",
        labels=["malicious-activity"],
    )
    template = json.loads(first.serialize())
    objects = [template]
    for i in range(1, n):
        obj = copy.copy(template)
        obj["id"] = f"indicator--{uuid.uuid4()}"
        obj["name"] = f"bench indicator {i}"
        obj["description"] = description()
        obj["pattern"] = f"[file:hashes.'SHA-256' = '{os.urandom(32).hex()}']"
        objects.append(obj)
    for obj in objects[1:4]:
        stix2.parse(obj, version="2.1")  # the copies are valid STIX too
    return objects


def run_medallion(args: argparse.Namespace, tmp_root: Path) -> MedallionResult:
    try:
        import medallion
        from taxii2client.v21 import Collection
    except ImportError:
        raise SystemExit(
            "medallion is missing: make installs it (the bench extra), or .venv/bin/pip install medallion taxii2-client stix2; or --skip-medallion"
        ) from None
    version = getattr(medallion, "__version__", "?")
    print(
        f"\n== medallion {version} (in-memory backend): {args.items:,} STIX 2.1 indicators, "
        f"envelopes of {args.batch}, {args.clients} clients =="
    )
    print(f"  before the run: {settle_disk()}")
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="gsomia-bench-medallion-", dir=tmp_root))
        stack.callback(shutil.rmtree, tmp, True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        collection_id = str(uuid.uuid4())
        user, password = "bench", uuid.uuid4().hex
        data = {
            "/discovery": {
                "title": "gsomia benchmark",
                "description": "medallion for bench/exchange.py",
                "default": f"{base}/bench/",
                "api_roots": [f"{base}/bench/"],
            },
            "bench": {
                "information": {
                    "title": "bench",
                    "description": "bench",
                    "versions": ["application/taxii+json;version=2.1"],
                    "max_content_length": 256 << 20,
                },
                "status": [],
                "collections": [
                    {
                        "id": collection_id,
                        "title": "bench",
                        "description": "bench",
                        "can_read": True,
                        "can_write": True,
                        "media_types": ["application/stix+json;version=2.1"],
                        "objects": [],
                        "manifest": [],
                    }
                ],
            },
        }
        (tmp / "data.json").write_text(json.dumps(data), encoding="utf-8")
        config = {
            "backend": {
                "module": "medallion.backends.memory_backend",
                "module_class": "MemoryBackend",
                "filename": str(tmp / "data.json"),
            },
            "users": {user: password},
            "taxii": {"max_page_size": max(100, args.items)},
        }
        (tmp / "config.json").write_text(json.dumps(config), encoding="utf-8")
        log = (tmp / "medallion.log").open("wb")
        stack.callback(log.close)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medallion.scripts.run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "ERROR",
                str(tmp / "config.json"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop_process, server)
        _wait_for_taxii(server, base, (user, password), tmp / "medallion.log")

        objects = stix_indicators(args.items)
        envelopes = [
            json.dumps({"objects": objects[i : i + args.batch]}).encode("utf-8")
            for i in range(0, args.items, args.batch)
        ]
        collection_url = f"{base}/bench/collections/{collection_id}/"
        collections = [Collection(collection_url, user=user, password=password) for _ in range(args.clients)]
        for c in collections:
            assert c.can_write  # loads the collection's information before the clock starts
        work: queue.Queue[bytes] = queue.Queue()
        for env in envelopes:
            work.put(env)
        add_ms: list[float] = []
        accepted = [0]
        lock = threading.Lock()
        abort = threading.Event()
        stack.callback(abort.set)

        def client(collection: Any) -> None:
            while not abort.is_set():
                try:
                    env = work.get_nowait()
                except queue.Empty:
                    return
                start = time.perf_counter()
                status = collection.add_objects(env, wait_for_completion=True, poll_interval=0.05, timeout=600)
                end = time.perf_counter()
                if status.status != "complete" or status.failure_count or status.pending_count:
                    abort.set()
                    raise RuntimeError(
                        f"medallion status {status.status}: {status.success_count} ok, "
                        f"{status.failure_count} failed, {status.pending_count} pending"
                    )
                with lock:
                    add_ms.append((end - start) * 1000)
                    accepted[0] += status.success_count

        meter = CpuMeter({"medallion": lambda: [server.pid]})
        meter.start()
        pool = ThreadPoolExecutor(args.clients, thread_name_prefix="taxii")
        stack.callback(pool.shutdown, False, cancel_futures=True)
        t0 = time.perf_counter()
        futures = [pool.submit(client, c) for c in collections]
        for f in futures:
            f.result()
        t_end = time.perf_counter()
        cpu = meter.stop()
        seconds = t_end - t0

        print("  verifying medallion's objects ...", flush=True)
        # The manifest, not the objects: medallion's in-memory GET /objects matches every
        # object against every manifest entry, parsing timestamps each time (minutes for
        # 20,000). Filtering by spec_version and asking for all versions keeps its manifest
        # filters linear too; one page, since max_page_size is the number of objects.
        got = collections[0].get_manifest(spec_version="2.1", version="all")
        ids = [o["id"] for o in got.get("objects", [])]
        expected = {o["id"] for o in objects}
        verified = accepted[0] == args.items and len(ids) == args.items and set(ids) == expected
        note = f"its manifest lists {len(ids):,} objects ({len(set(ids)):,} distinct); statuses said {accepted[0]:,}"

        result = MedallionResult(
            objects=args.items,
            batch=args.batch,
            clients=args.clients,
            seconds=round(seconds, 3),
            objects_per_s=round(args.items / seconds, 1),
            first_adds_ms=round(percentile(add_ms[: args.clients], 50), 1),
            last_adds_ms=round(percentile(add_ms[-args.clients :], 50), 1),
            add_ms_p50=round(percentile(add_ms, 50), 1),
            add_ms_p99=round(percentile(add_ms, 99), 1),
            verified=verified,
            verify_note=note,
            cpu_seconds=cpu,
            version=version,
        )
        print(
            f"  accepted (status complete): {args.items:,} objects in {seconds:.2f} s = "
            f"{result.objects_per_s:,.0f} objects/s ({'verified' if verified else 'NOT VERIFIED'}: {note})"
        )
        print(
            f"  per add of {args.batch}: p50 {result.add_ms_p50:.0f} ms, p99 {result.add_ms_p99:.0f} ms; "
            f"median of the first {args.clients} adds {result.first_adds_ms:.0f} ms, "
            f"of the last {args.clients} {result.last_adds_ms:.0f} ms (the in-memory backend compares "
            "each new object with every stored one, so it slows as it fills)"
        )
        print(
            f"  CPU seconds over {cpu['wall']:.2f} s wall ({cpu['machine capacity']:.1f} core-s available): "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k not in ("wall", "machine capacity"))
        )
        return result


def _wait_for_taxii(server: subprocess.Popen[bytes], base: str, auth: tuple[str, str], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"medallion exited with {server.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(
                f"{base}/taxii2/", auth=auth, headers={"Accept": "application/taxii+json;version=2.1"}, timeout=1
            )
            if r.status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"medallion did not answer within 30 s: {log.read_text(errors='replace')[-2000:]}")


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the summary --------------------------------------------------------------------------------


def summary(
    info: dict[str, Any], gsomia: list[GsomiaResult], taxii: MedallionResult | None, args: argparse.Namespace
) -> bool:
    """Print the table; True if every target is met and everything verified."""
    print("\n== summary ==")
    print(
        f"machine: {info['nproc']} cores ({info['cpu']}), load average at start "
        f"{' '.join(str(x) for x in info['loadavg'])}, Python {info['python']}"
    )
    print(f"{args.items:,} items / objects, batches of {args.batch}, {args.clients} client threads\n")
    rows: list[tuple[str, str, str, str, str]] = []
    ok = True
    for r in gsomia:
        target = TARGET_ITEMS_PER_S[r.backend]
        met = r.items_per_s >= target and r.verified
        ok &= met
        ratio = f"{r.items_per_s / taxii.objects_per_s:.2f}x" if taxii else "-"
        name = BACKEND_NAMES[r.backend]
        rows.append(
            (
                f"gsomia {name}, acknowledged items/s",
                f"{r.items_per_s:,.0f}",
                ratio,
                f">= {target:,.0f}",
                ("met" if met else "MISSED") + ("" if r.verified else " (NOT VERIFIED)"),
            )
        )
    for r in gsomia:
        met = r.flash_ms_p99 <= TARGET_FLASH_P99_MS and r.flash_received == r.flash_sent and r.flash_sent > 0
        ok &= met
        name = BACKEND_NAMES[r.backend]
        rows.append(
            (
                f"gsomia {name}, flash p99 ms ({r.flash_received}/{r.flash_sent}, p50 {r.flash_ms_p50:.1f})",
                f"{r.flash_ms_p99:.1f}",
                "",
                f"<= {TARGET_FLASH_P99_MS:.0f}",
                "met" if met else "MISSED",
            )
        )
    if taxii:
        ok &= taxii.verified
        rows.append(
            (
                f"medallion {taxii.version} in-memory, objects/s",
                f"{taxii.objects_per_s:,.0f}",
                "1.00x",
                "",
                "" if taxii.verified else "NOT VERIFIED",
            )
        )
    header = ("", "rate / ms", "vs medallion", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}  {row[4]}")
    for r in gsomia:
        made = {name: w["segments_added"] for name, w in r.wal.items() if w["segments_added"] > 0}
        if made:
            print(
                f"note: during the {BACKEND_NAMES[r.backend]} run "
                + ", ".join(
                    f"{name} made {n:.0f} new WAL segment file{'' if n == 1 else 's'}" for name, n in made.items()
                )
                + "; commits wait while a server makes one (docs/operations.md: min_wal_size)"
            )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20_000, help="items (and STIX objects) per run")
    parser.add_argument("--batch", type=int, default=500, help="items per POST /items and objects per envelope")
    parser.add_argument("--clients", type=int, default=4, help="client threads posting batches")
    parser.add_argument("--postgres", action="store_true", help="also run gsomia on PostgreSQL")
    parser.add_argument(
        "--postgres-flash",
        action="store_true",
        help="also run gsomia on PostgreSQL with each node's flash lane in a database of its own "
        "(flash_database_url) on a second PostgreSQL server that the bench starts on this machine",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    parser.add_argument("--skip-medallion", action="store_true", help="skip the medallion comparison")
    parser.add_argument(
        "--one-process", action="store_true", help="run each node as one process, without its flash process"
    )
    parser.add_argument("--bulk-nice", type=int, metavar="N", help="the nodes' bulk_nice (default: node.toml's)")
    parser.add_argument("--flash-interval", type=float, default=0.05, help="seconds between flash reports (0: none)")
    parser.add_argument(
        "--idle-flash", type=int, default=100, help="flash reports sent before the bulk run, for a baseline (0: none)"
    )
    parser.add_argument(
        "--probe-in-process",
        action="store_true",
        help="time flash reports from this process, beside the bulk clients",
    )
    parser.add_argument(
        "--probe-realtime",
        action="store_true",
        help="run the flash probe's process as SCHED_RR like the flash processes (default: the normal priority)",
    )
    parser.add_argument("--sample-interval", type=float, default=0.5, help="seconds between outbox samples")
    parser.add_argument(
        "--idle-streams",
        type=int,
        default=0,
        metavar="N",
        help="hold N alert streams open on KOR beside the probe's, over as many analysts as its per-user limit needs",
    )
    parser.add_argument(
        "--idle-streams-read",
        action="store_true",
        help="the --idle-streams analysts are cleared for the flash reports (default: none is shown to them)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="record both nodes (and their flash processes) with py-spy into DIR and summarize",
    )
    parser.add_argument(
        "--py-spy-idle",
        metavar="DIR",
        help="record both nodes and their flash processes with py-spy during the --idle-flash reports into DIR",
    )
    parser.add_argument(
        "--trace", action="store_true", help="mark each flash report's hops in both nodes and print where it waited"
    )
    parser.add_argument("--tmp", metavar="DIR", help="where the nodes' state goes (default: the system temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 3 if a target is missed")
    args = parser.parse_args(argv)
    if args.items < 1 or args.batch < 1 or args.batch > 1000 or args.clients < 1:
        parser.error("need --items >= 1, 1 <= --batch <= 1000, --clients >= 1")

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    info = machine()
    print(
        f"machine: {info['nproc']} cores ({info['cpu']}), load average {' '.join(map(str, info['loadavg']))}, "
        f"Python {info['python']}, state under {args.tmp or info['tmp']}\ngsomia: {info['code']}"
    )
    tmp_root = Path(args.tmp) if args.tmp else None
    if tmp_root:
        tmp_root.mkdir(parents=True, exist_ok=True)
    backends = (
        ([] if args.no_sqlite else ["sqlite"])
        + (["postgresql"] if args.postgres else [])
        + (["postgresql+flash"] if args.postgres_flash else [])
    )
    results: list[GsomiaResult] = []
    taxii: MedallionResult | None = None
    try:
        for backend in backends:
            results.append(run_gsomia(backend, args, tmp_root or Path(tempfile.gettempdir())))
        if not args.skip_medallion:
            taxii = run_medallion(args, tmp_root or Path(tempfile.gettempdir()))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    ok = summary(info, results, taxii, args)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "gsomia": [asdict(r) for r in results],
                    "medallion": asdict(taxii) if taxii else None,
                    "targets_met": ok,
                },
                indent=2,
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
    verified = all(r.verified for r in results) and (taxii is None or taxii.verified)
    if not verified:
        return 1
    return 3 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
