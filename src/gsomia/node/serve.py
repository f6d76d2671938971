"""Run a node: the user API and the mutual-TLS peer API, plus delivery.

One process by default. With ``flash_listen`` in ``node.toml`` the node runs two: this
main process (bulk delivery, the witness) and a flash process it starts, watches and
restarts, serving the flash lane on ports of its own (R17; ``node/link.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from gsomia.core.errors import AgreementFileError
from gsomia.node.api import Broker, create_peer_app, create_user_app
from gsomia.node.api.wire import BoundedHttpTools
from gsomia.node.link import Handler, Link
from gsomia.node.runtime import tls
from gsomia.node.runtime.clock import SimulatedClock, SystemClock
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.runtime.priority import lower_priority, raise_database_sessions, raise_priority
from gsomia.node.service import LANES, Node
from gsomia.node.workers.checkpoint import Checkpointer
from gsomia.node.workers.delivery import Delivery
from gsomia.node.workers.keysync import KeySync
from gsomia.node.workers.notewatch import NoteWatch
from gsomia.node.workers.sequencer import Sequencer
from gsomia.node.workers.witness import Witness
from gsomia.store.db import open_node_database

log = logging.getLogger("gsomia.serve")


def peer_ca_bundle(config: NodeConfig) -> Path:
    """The peers' certificates, the only anchors the peer API trusts for client certificates."""
    bundle = config.path.parent / ".peer-ca.pem"
    tmp = bundle.with_name(f".peer-ca.{os.getpid()}.tmp")  # both processes of a node write it
    tmp.write_bytes(b"".join(p.tls_cert.read_bytes() for p in config.peers.values()))
    tmp.replace(bundle)
    return bundle


def _same_server(a: str, b: str) -> bool:
    from sqlalchemy.engine import make_url

    ua, ub = make_url(a), make_url(b)
    return (ua.host or "localhost", ua.port or 5432) == (ub.host or "localhost", ub.port or 5432)


def build(config: NodeConfig, lanes: tuple[str, ...] = LANES) -> tuple[Node, Delivery, Broker]:
    flash_url = config.flash_database_url
    if flash_url is not None and "flash" in lanes and _same_server(config.database_url, flash_url):
        log.warning(
            "flash_database_url is on the same PostgreSQL server as database_url: both share its write-ahead "
            "log, and flash commits still wait for bulk ones (docs/operations.md)"
        )
    engine = open_node_database(config, own_checkpoints=True)  # the main process's Checkpointer
    clock = SimulatedClock() if config.demo else SystemClock()
    node = Node(config, engine, clock)
    return node, Delivery(node, lanes), Broker()


WITNESS_INTERVAL = float(os.environ.get("GSOMIA_WITNESS_INTERVAL", "30"))
RESTART_DELAY = 1.0  # seconds before a flash process that died is started again


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to the process (``_on_signals``).

    Each uvicorn server takes SIGINT for itself and passes it on once it has stopped: a
    process's two servers would stop one after the other, each waiting out its graceful
    timeout for connections still open."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _once(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``fn`` run the first time it is called; later calls wait for that run (a signal and the
    servers' end both stop the same things)."""
    started: list[asyncio.Future[None]] = []

    async def run() -> None:
        if not started:
            started.append(asyncio.ensure_future(fn()))
        await asyncio.shield(started[0])

    return run


def _on_signals(
    servers: list[uvicorn.Server], first: Callable[[], Awaitable[None]], broker: Broker
) -> Callable[[], None]:
    """SIGINT or SIGTERM: end the alert streams, run ``first`` and stop every server at once; a
    second signal forces them.

    Open alert streams end as finished responses (``Broker.close``): left open, the servers would
    wait out their graceful timeout and then cancel them, with a traceback in the log. ``first``
    closes this process's connections to the partner: the partner's servers wait for them when it
    stops too, as ours wait for its connections to us, up to their graceful timeout.
    Returns what to call when the servers are done: it puts the signal handlers back. A stop that
    was asked for is a clean exit (status 0), which is what a service manager expects of it."""
    loop = asyncio.get_running_loop()
    received: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    def handle(sig: int) -> None:
        received.append(sig)
        broker.close()
        if len(received) == 1:
            tasks.append(asyncio.ensure_future(first()))
        for server in servers:
            server.should_exit = True
            server.force_exit = len(received) > 1

    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, handle, sig)

    def done() -> None:
        for sig in handled:
            loop.remove_signal_handler(sig)

    return done


def _server(app: Any, address: tuple[str, int], context: ssl.SSLContext | None = None) -> uvicorn.Server:
    # uvicorn's own context takes only file names and a protocol: the context is built here
    # (``tls.server_context``: TLS 1.3 only) and handed over whole.
    tls_options: dict[str, Any] = {} if context is None else {"ssl_context_factory": lambda _config, _default: context}
    return _Server(
        uvicorn.Config(
            app,
            host=address[0],
            port=address[1],
            log_level="warning",
            access_log=False,
            lifespan="off",
            # httptools (llhttp, in C) parses requests instead of h11 in pure Python: a flash
            # report's server-side cost is mostly request handling (README, Performance),
            http=BoundedHttpTools,  # with the request's head bounded (``wire.py``)
            # Open SSE streams, and a partner's idle keep-alive TLS connections (which never answer
            # close_notify), would otherwise hold shutdown forever.
            timeout_graceful_shutdown=3,
            **tls_options,
        )
    )


def _context(config: NodeConfig, client_cas: Path | None = None) -> ssl.SSLContext:
    try:
        return tls.server_context(config.tls_cert, config.tls_key, client_cas)
    except (OSError, ssl.SSLError) as exc:  # one line naming the files, not a traceback
        raise AgreementFileError(
            str(config.path), "tls_cert", f"{config.tls_cert} and {config.tls_key} cannot be served: {exc}"
        ) from None


def _peer_tls(config: NodeConfig) -> ssl.SSLContext:
    return _context(config, peer_ca_bundle(config))


def _user_tls(config: NodeConfig, address: tuple[str, int]) -> ssl.SSLContext | None:
    """The user API's TLS context on ``address``, or None for plain HTTP (``user_tls = false``,
    which the configuration allows on loopback only), said in the node's log at start."""
    host = f"{address[0]}:{address[1]}"
    if not config.user_tls:
        log.warning(
            "user API over plain HTTP on loopback: %s (user_tls = false); bearer tokens cross it unencrypted, "
            "readable by anyone who can capture this host's loopback traffic",
            host,
        )
        return None
    context = _context(config)  # first: a certificate that cannot be read stops the node in one line
    valid = tls.names(config.tls_cert.read_bytes())
    if address[0] not in valid and address[0] not in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        log.warning(
            "user API on %s: the certificate %s names only %s; clients reaching it by %s will refuse it "
            "(gsomia keys generate --tls-only --host ...)",
            host,
            config.tls_cert,
            ", ".join(valid),
            address[0],
        )
    return context


def _hints(node: Node, delivery: Delivery, broker: Broker) -> dict[str, Handler]:
    """What each process does with the other's hints (``node/link.py``)."""

    def wake(words: list[str]) -> None:
        lane, peer = words
        if peer in node.config.peers and lane in LANES:
            delivery.notify(peer, lane)

    def clock(words: list[str]) -> None:
        if isinstance(node.clock, SimulatedClock):
            node.clock.offset = float(words[0])  # the setter, not ``set``: no hint back

    def ledger(_: list[str]) -> None:  # the flash process queued ledger entries: sequence them
        node.queued += 1

    def trim(_: list[str]) -> None:  # the main process moved rows out of the flash file: delete them there
        task = asyncio.ensure_future(node.lanes.run("flash", node.trim_flash))
        task.add_done_callback(_log_failure("trimming the flash file"))

    return {"wake": wake, "alerts": lambda _: broker.wake(), "clock": clock, "ledger": ledger, "trim": trim}


def _log_failure(what: str) -> Callable[[asyncio.Future[None]], None]:
    def done(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # the next hint tries again
            log.warning("%s failed: %s", what, task.exception())

    return done


def _wire(link: Any, node: Node, delivery: Delivery, broker: Broker) -> None:
    """Hints to the other process, for what this one commits on a lane it does not deliver."""
    delivery.forward = lambda peer, lane: link.send_threadsafe("wake", lane, peer)
    broker.relay = lambda: link.send_threadsafe("alerts")
    if "flash" not in delivery.lanes:
        node.on_flash_queued = lambda peer: link.send_threadsafe("wake", "flash", peer)
        node.on_flash_moved = lambda: link.send_threadsafe("trim")
    if isinstance(node.clock, SimulatedClock):
        node.clock.on_set = lambda offset: link.send_threadsafe("clock", repr(offset))


class FlashProcess:
    """The node's flash process, seen from the main process: started, watched, restarted.

    It is started from a thread kept at the main process's original CPU priority (Linux
    nice values are per thread, and a child inherits the forking thread's), so the main
    process may lower its own priority and still start flash processes at full priority.
    """

    def __init__(self, config: NodeConfig, node: Node, delivery: Delivery, broker: Broker) -> None:
        self.config, self.node, self.delivery, self.broker = config, node, delivery, broker
        self.spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsomia-spawner")
        self.spawner.submit(lambda: None).result()  # the thread exists now, before any nice
        self.link: Link | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self._task: asyncio.Task[None] | None = None

    def send_threadsafe(self, *words: str) -> None:
        if self.link is not None:
            self.link.send_threadsafe(*words)

    async def start(self) -> None:
        _wire(self, self.node, self.delivery, self.broker)
        await self._spawn()
        self._task = asyncio.create_task(self._watch(), name="flash-process")

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-m", "gsomia", "node", "serve", "--config", str(self.config.path)]
        argv += ["--flash-link", str(theirs.fileno())]
        try:
            self.proc = await asyncio.get_running_loop().run_in_executor(
                self.spawner,
                # Its own session: a Ctrl-C meant for the node reaches the main process, which stops it.
                lambda: subprocess.Popen(argv, pass_fds=(theirs.fileno(),), start_new_session=True),  # noqa: S603
            )
        finally:
            theirs.close()
        self.link = Link(ours, _hints(self.node, self.delivery, self.broker))
        await self.link.open()
        if isinstance(self.node.clock, SimulatedClock):
            self.link.send("clock", repr(self.node.clock.offset))
        for peer in self.config.peers:  # rows may have waited while it was down
            self.link.send("wake", "flash", peer)
        self.link.send("trim")  # and rows moved meanwhile, to be deleted from its file

    async def _watch(self) -> None:
        while not self.stopping:
            assert self.link is not None
            assert self.proc is not None
            await self.link.closed.wait()
            if self.stopping:
                return
            code = await asyncio.get_running_loop().run_in_executor(self.spawner, self.proc.wait)
            log.error("the flash process exited (%s); starting another in %.0f s", code, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)
            if not self.stopping:
                await self._spawn()

    async def stop(self, timeout: float = 8.0) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.link is not None:
            self.link.close()  # end of file: the flash process stops
        if self.proc is not None:
            proc = self.proc
            try:
                await asyncio.get_running_loop().run_in_executor(self.spawner, proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.spawner.shutdown(wait=False)


def run(config: NodeConfig, flash_link: int | None = None) -> None:
    """Serve until stopped, on uvloop's event loop (libuv): its sockets, TLS and callbacks
    cost the node's processes less CPU per request than asyncio's pure-Python loop."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.umask(0o077)  # whatever the node writes (databases, logs, bundles) is its owner's alone
    if flash_link is not None and config.flash_realtime:
        raise_priority()  # before the loop starts its threads: they inherit the policy
    uvloop.run(serve(config, flash_link))


async def serve(config: NodeConfig, flash_link: int | None = None) -> None:
    """The main process, or with ``flash_link`` (a socket's file descriptor) the flash process."""
    if flash_link is not None:
        await _serve_flash(config, socket.socket(fileno=flash_link))
        return
    user_tls, peer_tls = _user_tls(config, config.listen), _peer_tls(config)  # a bad key stops it here, first
    split = config.flash_listen is not None
    if not split:
        # Flash and bulk threads share this process's GIL: hand it over more often (default
        # 5 ms) so a flash report's thread is not kept waiting behind a bulk thread's time
        # slice (R17). Where flash work has a process of its own, neither process needs it,
        # and in the flash process it would only make a report's threads wake each other more.
        sys.setswitchinterval(0.001)
    node, delivery, broker = build(config, ("bulk",) if split else LANES)
    flash = FlashProcess(config, node, delivery, broker) if split else None
    if flash is not None:
        await flash.start()
        lower_priority(config.bulk_nice, config.bulk_idle)
    await delivery.start()
    keys = KeySync(node, delivery.clients)
    witness = Witness(node, delivery.clients, WITNESS_INTERVAL, keys)
    delivery.witness = witness
    delivery.keys = keys
    user = _server(create_user_app(node, delivery, broker), config.listen, user_tls)
    peer = _server(create_peer_app(node, broker, witness, keys), config.peer_listen, peer_tls)
    sequencer = Sequencer(node)
    await sequencer.start()
    checkpointer = Checkpointer(node.engine, node.lanes)
    await checkpointer.start()
    notes = NoteWatch(node)
    await notes.start()
    await witness.start()

    @_once
    async def stop_outgoing() -> None:
        await asyncio.gather(witness.stop(), delivery.stop(), flash.stop() if flash is not None else asyncio.sleep(0))

    signalled = _on_signals([user, peer], stop_outgoing, broker)
    try:
        await asyncio.gather(user.serve(), peer.serve())
    finally:
        await stop_outgoing()  # again: a no-op after a signal
        await sequencer.stop()
        await checkpointer.stop()
        await notes.stop()
        node.dispose()
    signalled()


async def _serve_flash(config: NodeConfig, sock: socket.socket) -> None:
    """The flash process: the flash lane's delivery, and the user and peer APIs on the flash ports."""
    assert config.flash_listen is not None
    assert config.flash_peer_listen is not None
    user_tls, peer_tls = _user_tls(config, config.flash_listen), _peer_tls(config)
    node, delivery, broker = build(config, ("flash",))
    if config.flash_realtime:
        raise_database_sessions(node.engine)
        if node.flash.separate:  # its own PostgreSQL database (``flash_database_url``); no-op for a file
            raise_database_sessions(node.flash.engine)
    link = Link(sock, _hints(node, delivery, broker))
    await link.open()
    _wire(link, node, delivery, broker)
    await delivery.start()
    keys = KeySync(node, delivery.clients)
    delivery.keys = keys
    user = _server(create_user_app(node, delivery, broker), config.flash_listen, user_tls)
    peer = _server(create_peer_app(node, broker, None, keys), config.flash_peer_listen, peer_tls)
    sequencer = Sequencer(node, delegate=lambda: link.send("ledger"))
    await sequencer.start()
    notes = NoteWatch(node)
    await notes.start()

    stop_outgoing = _once(delivery.stop)

    async def orphaned() -> None:
        await link.closed.wait()  # the main process stopped or died: so does this one
        user.should_exit = peer.should_exit = True
        broker.close()
        await stop_outgoing()  # its connections to the partner, first (``_on_signals``)

    watch = asyncio.create_task(orphaned())
    signalled = _on_signals([user, peer], stop_outgoing, broker)
    try:
        await asyncio.gather(user.serve(), peer.serve())
    finally:
        watch.cancel()
        await stop_outgoing()
        await sequencer.stop()
        await notes.stop()
        link.close()
        node.dispose()
    signalled()
