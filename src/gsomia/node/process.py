"""Run a node as a real process: for the demo, the integration tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gsomia.store.files import private_file


def answers(url: str, trust: ssl.SSLContext | None = None) -> bool:
    """Does the node at ``url`` answer ``GET /health``? ``trust``: the node's certificate, for https."""
    try:
        return httpx.get(f"{url}/health", timeout=0.5, verify=trust or True).status_code == 200
    except httpx.HTTPError:
        return False


class NodeProcess:
    """``gsomia node serve`` in a child process, with its log in ``log``."""

    def __init__(
        self, config: Path, user_url: str, log: Path, flash_url: str | None = None, trust: ssl.SSLContext | None = None
    ) -> None:
        self.config = config
        self.trust = trust  # what its user API's certificate is checked against, if it serves HTTPS
        self.user_url = user_url
        self.flash_url = flash_url  # the node's flash process: ready when it answers too
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> NodeProcess:
        start_all([self], timeout)
        return self

    def _spawn(self) -> None:
        handle = os.fdopen(private_file(self.log), "ab")  # a node's log names users, items and peers: 0600
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "gsomia", "node", "serve", "--config", str(self.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        handle.close()

    def _ready(self) -> bool:
        """Up and answering; raises once the process has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"node {self.config} exited with {self.proc.returncode}; see {self.log}")
        return all(answers(url, self.trust) for url in (self.user_url, self.flash_url) if url)

    def kill(self) -> None:
        """``kill -9``: no clean-up, no flush: what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        stop_all([self])

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_all(nodes: list[NodeProcess], timeout: float = 20.0) -> None:
    """Start every node at once and wait until all answer: a pair starts in the time of one.

    A node whose partner is not up yet retries its deliveries, so the order does not matter.
    If one fails to start, all are stopped."""
    for n in nodes:
        n._spawn()
    waiting = list(nodes)
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            waiting = [n for n in waiting if not n._ready()]
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(str(n.config) for n in waiting)
                raise RuntimeError(f"node {names} did not answer within {timeout:.0f} s; see {waiting[0].log}")
            time.sleep(0.1)
    except BaseException:
        stop_all(nodes)
        raise


def stop_all(nodes: list[NodeProcess], timeout: float = 10.0) -> None:
    """Ask every node to stop at once (SIGINT), then wait; ``kill -9`` what is still up."""
    running = [n for n in nodes if n.proc and n.proc.poll() is None]
    for n in running:
        assert n.proc is not None
        n.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for n in running:
        assert n.proc is not None
        try:
            n.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            n.kill()
