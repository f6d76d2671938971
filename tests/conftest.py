"""Shared fixtures: a pair of real nodes on each backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nodes import Pair, node_pair


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
