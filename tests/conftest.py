"""Shared fixtures: a pair of real nodes on each backend."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gsomia.node.setup.provision import port_range
from nodes import Pair, node_pair


def _own_ports() -> None:
    """Under pytest-xdist (``make test`` runs two workers), each worker, and the nodes and demos
    it starts, hands out ports from a slice of its own: two workers never pick the same one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return
    low, top = port_range()
    width = (top - low) // count
    start = low + int(worker[2:]) * width
    os.environ["GSOMIA_PORTS"] = f"{start}-{start + width}"


_own_ports()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(tmp_path: Path, backend: str) -> Iterator[Pair]:
    with node_pair(tmp_path, backend) as p:
        yield p


@pytest.fixture
def demo_pair(tmp_path: Path, backend: str) -> Iterator[Pair]:
    """Nodes whose clock the test moves (demo mode)."""
    with node_pair(tmp_path, backend, demo=True) as p:
        yield p
