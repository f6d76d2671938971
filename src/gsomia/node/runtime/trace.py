"""Marks on a flash report's way through the nodes, for ``bench/exchange.py --trace``.

Off unless ``GSOMIA_TRACE`` names a file when the node starts; then each mark appends
one line, ``<unix time> <pid> <item id> <point>``, in one ``write`` so that the lines of
both nodes' processes never interleave. py-spy shows where CPU time goes; these show
which hop a flash report waited at (R17).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

POINTS = (
    "provide.begin",  # the sender's transaction starts (the report is sealed)
    "provide.committed",
    "handed",  # the delivery worker takes it
    "posting",  # signed and encoded: on its way to the partner
    "receive.begin",  # the partner verified and opened it; its transaction starts
    "receive.committed",
    "stream.woke",  # an alert stream is woken with it
    "stream.shown",  # the stream hands it to its subscriber
)


class Trace:
    """Where a node writes its marks: nowhere (``fd`` None), or an open file descriptor."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = fd

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Trace:
        path = environ.get("GSOMIA_TRACE")
        return cls(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if path else None)

    def mark(self, item_id: str, point: str) -> None:
        if self.fd is not None:
            # Wall-clock time on purpose: the marks of two processes are compared with each other.
            os.write(self.fd, f"{time.time():.6f} {os.getpid()} {item_id} {point}\n".encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
